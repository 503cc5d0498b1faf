"""The keras.ops parts of ptft_keras on the JAX backend, at toy sizes (vocab 50, seq 8, hidden 16).

Run by ``tests/test_jax_backend.py`` in a fresh process (Keras picks its backend once, at import):

    KERAS_BACKEND=jax python tests/jax_subset.py [--out parity.json]

Prints one line per check, ``OK <name>: ...`` or ``FAIL <name>: <error> (file:line)``, and exits
1 if any check failed. ``--out`` writes the outputs of deterministic ops on seeded NumPy inputs
(the inputs too), so the caller can recompute them on TensorFlow and compare.
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# Keras is imported inside the functions only: importing this module (the TF side of the parity
# check does) leaves the backend alone; running it as a script selects JAX first.

VOCAB, SEQ, HIDDEN, BATCH = 50, 8, 16, 8
CHECKS = (  # cheap ones first: what ran before a timeout is still reported
    "backend",
    "masked_mean_pooling",
    "sentence_embedding",
    "gradient_reversal",
    "tied_output",
    "uncertainty_weighting",
    "warmup_linear_decay",
    "transformer_backbone",
    "transformer_backbone_prenorm",
    "lstm_backbone",
    "mlm_pretrainer",
)


# --- seeded inputs, shared with the TF side of the parity check -----------------------------------
def parity_inputs(seed=0):
    """Float sequence (B, S, H), a 0/1 padding mask with ragged lengths (one all-padding row),
    an embedding table (V, H), a bias (V,) and hidden states (B, H): all NumPy, all seeded."""
    rng = np.random.default_rng(seed)
    sequence = rng.normal(size=(4, SEQ, HIDDEN)).astype("float32")
    lengths = np.array([SEQ, 3, 1, 0])
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype("int32")
    table = rng.normal(size=(VOCAB, HIDDEN)).astype("float32")
    bias = rng.normal(size=(VOCAB,)).astype("float32")
    hidden = rng.normal(size=(4, HIDDEN)).astype("float32")
    return {"sequence": sequence, "mask": mask, "table": table, "bias": bias, "hidden": hidden}


def parity_outputs(inputs):
    """MaskedMeanPooling, SentenceEmbedding and TiedOutput on ``inputs``, on the current backend."""
    import keras

    from ptft_keras import layers

    pooled = layers.MaskedMeanPooling()(inputs["sequence"], inputs["mask"])
    embedded = layers.SentenceEmbedding()(inputs["sequence"], inputs["mask"])
    embedding = keras.layers.Embedding(VOCAB, HIDDEN)
    embedding.build((None,))
    embedding.embeddings.assign(inputs["table"])
    tied = layers.TiedOutput(embedding)
    tied.build((None, HIDDEN))
    tied.bias.assign(inputs["bias"])
    logits = tied(inputs["hidden"])
    return {
        "masked_mean_pooling": keras.ops.convert_to_numpy(pooled),
        "sentence_embedding": keras.ops.convert_to_numpy(embedded),
        "tied_output": keras.ops.convert_to_numpy(logits),
    }


def numpy_masked_mean(sequence, mask):
    weights = mask[..., None].astype("float64")
    return (sequence * weights).sum(1) / np.maximum(weights.sum(1), 1.0)


# --- the checks: each returns a short detail string or raises ------------------------------------
def token_ids(seed=0):
    """(B, S) ids in [5, VOCAB) (no special tokens), right-padded with 0 to ragged lengths >= 3."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(BATCH, SEQ)).astype("int32")
    lengths = rng.integers(3, SEQ + 1, size=BATCH)
    ids[np.arange(SEQ)[None, :] >= lengths[:, None]] = 0
    return ids


def finite(value, what):
    value = np.asarray(value, "float64")
    if not np.all(np.isfinite(value)):
        raise AssertionError(f"{what} is not finite: {value}")
    return value


def one_fit_step(model, x, y):
    """compile_classifier, one fit step; returns (loss, max |weight change|)."""
    import keras

    from ptft_keras import finetuning, optimizers

    # The schedule runs inside the jitted train step (warmup 0: step 0 already has the peak rate).
    schedule = optimizers.WarmupLinearDecay(peak=1e-2, warmup_steps=0, total_steps=10)
    finetuning.compile_classifier(model, optimizer=keras.optimizers.AdamW(learning_rate=schedule))
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    loss = float(finite(history.history["loss"][-1], "fit loss"))
    change = max(float(np.max(np.abs(keras.ops.convert_to_numpy(w) - b)))
                 for w, b in zip(model.trainable_weights, before))
    if not change > 0:
        raise AssertionError("one fit step changed no weight")
    return loss, change


def check_classifier(backbone, pooling):
    import keras

    from ptft_keras import models

    ids = token_ids()
    out = keras.ops.convert_to_numpy(backbone({"token_ids": ids}))
    expected = (BATCH, SEQ, backbone.output.shape[-1])
    if out.shape != expected:
        raise AssertionError(f"backbone output {out.shape}, expected {expected}")
    finite(out, "backbone output")
    clf = models.build_classifier(backbone, num_classes=3, pooling=pooling)
    logits = keras.ops.convert_to_numpy(clf({"token_ids": ids}))
    if logits.shape != (BATCH, 3):
        raise AssertionError(f"classifier logits {logits.shape}, expected {(BATCH, 3)}")
    finite(logits, "logits")
    labels = np.arange(BATCH, dtype="int32") % 3
    loss, change = one_fit_step(clf, {"token_ids": ids}, labels)
    return f"out {out.shape}, logits {logits.shape}, fit loss {loss:.4f}, max dw {change:.2e}"


def check_backend():
    import keras

    if keras.backend.backend() != "jax":
        raise AssertionError(f"keras backend is {keras.backend.backend()!r}, not 'jax'")
    import jax

    return f"keras {keras.__version__} on jax {jax.__version__}"


def check_transformer_backbone(normalize_first=False):
    from ptft_keras import models

    backbone = models.TransformerBackbone(
        vocabulary_size=VOCAB, max_sequence_length=SEQ, num_layers=1, hidden_dim=HIDDEN,
        num_heads=2, intermediate_dim=32, normalize_first=normalize_first,
    )
    return check_classifier(backbone, pooling="cls" if normalize_first else "mean")


def check_lstm_backbone():
    from ptft_keras import models

    backbone = models.LSTMBackbone(vocabulary_size=VOCAB, embedding_dim=HIDDEN,
                                   hidden_dim=HIDDEN // 2, bidirectional=True)
    return check_classifier(backbone, pooling="mean")


def check_masked_mean_pooling():
    inputs = parity_inputs()
    got = parity_outputs(inputs)["masked_mean_pooling"]
    want = numpy_masked_mean(inputs["sequence"], inputs["mask"])
    np.testing.assert_allclose(got, want, atol=1e-6)
    if np.any(got[-1] != 0):
        raise AssertionError("an all-padding row must pool to zeros")
    return f"max |jax - numpy| {np.max(np.abs(got - want)):.1e}"


def check_sentence_embedding():
    inputs = parity_inputs()
    got = parity_outputs(inputs)["sentence_embedding"]
    norms = np.linalg.norm(got[:-1], axis=-1)  # the all-padding row is 0, not unit
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)
    mean = numpy_masked_mean(inputs["sequence"], inputs["mask"])[:-1]
    np.testing.assert_allclose(got[:-1], mean / np.linalg.norm(mean, axis=-1, keepdims=True),
                               atol=1e-6)
    return f"norms {np.round(norms, 6).tolist()}"


def check_gradient_reversal():
    import jax
    import jax.numpy as jnp

    from ptft_keras import layers

    lam = 0.7
    layer = layers.GradientReversal(lambda_=lam)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)).astype("float32"))
    w = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)).astype("float32"))
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(x))  # forward: identity
    grad = jax.grad(lambda v: jnp.sum(w * layer(v)))(x)
    np.testing.assert_allclose(np.asarray(grad), -lam * np.asarray(w), rtol=1e-6)
    jitted = jax.jit(jax.grad(lambda v: jnp.sum(w * layer(v))))(x)
    np.testing.assert_allclose(np.asarray(jitted), -lam * np.asarray(w), rtol=1e-6)
    layer.lambda_ = 2.0  # what DANNSchedule does during fit
    grad = jax.grad(lambda v: jnp.sum(w * layer(v)))(x)
    np.testing.assert_allclose(np.asarray(grad), -2.0 * np.asarray(w), rtol=1e-6)
    return "forward identity; grad = -lambda * upstream (lambda 0.7, jit, then 2.0)"


def check_tied_output():
    inputs = parity_inputs()
    got = parity_outputs(inputs)["tied_output"]
    want = inputs["hidden"].astype("float64") @ inputs["table"].T.astype("float64") + inputs["bias"]
    np.testing.assert_allclose(got, want, atol=1e-5)
    return f"logits {got.shape}, max |jax - numpy| {np.max(np.abs(got - want)):.1e}"


def check_mlm_pretrainer():
    from ptft_keras import models, objectives

    backbone = models.TransformerBackbone(
        vocabulary_size=VOCAB, max_sequence_length=SEQ, num_layers=1, hidden_dim=HIDDEN,
        num_heads=2, intermediate_dim=32,
    )
    pretrainer = objectives.MaskedLMPretrainer(backbone)
    dataset = objectives.MLMDataset(token_ids(), VOCAB, batch_size=BATCH, seed=0)
    x = dataset[0][0]  # (inputs, mask_ids, mask_weights)
    logits = np.asarray(pretrainer(x))
    if logits.shape != (BATCH, x["mask_positions"].shape[1], VOCAB):
        raise AssertionError(f"MLM logits {logits.shape}")
    history = pretrainer.fit(dataset, epochs=1, verbose=0)
    loss = float(finite(history.history["loss"][-1], "MLM loss"))
    return f"{len(dataset)} step, logits {logits.shape}, loss {loss:.4f} (ln 50 = {np.log(50):.2f})"


def check_uncertainty_weighting():
    import jax
    import jax.numpy as jnp

    from ptft_keras import multitask

    losses = np.array([1.5, 0.4], "float32")
    present = np.array([1.0, 1.0], "float32")
    s = np.array([0.5, -0.3], "float32")
    details = []
    for form, scale, reg in (("simple", [1, 1], [1, 1]), ("kendall", [1, 0.5], [0.5, 0.5])):
        layer = multitask.UncertaintyWeighting(["classification", "regression"], form=form)
        zero = float(layer(losses, present))
        np.testing.assert_allclose(zero, np.dot(scale, losses), rtol=1e-6)  # s = 0: weights c_i
        layer.log_variances.assign(s)
        want = np.sum(np.array(scale) * np.exp(-s) * losses + np.array(reg) * s)
        np.testing.assert_allclose(float(layer(losses, present)), want, rtol=1e-6)
        # A task absent from the batch adds nothing, not even its r_i * s_i term.
        only_first = float(layer(losses, np.array([1.0, 0.0], "float32")))
        np.testing.assert_allclose(only_first, scale[0] * np.exp(-s[0]) * losses[0] + reg[0] * s[0],
                                   rtol=1e-6)
        grad = jax.grad(lambda v, f=layer: f(v, jnp.asarray(present)))(jnp.asarray(losses))
        np.testing.assert_allclose(np.asarray(grad), np.array(scale) * np.exp(-s), rtol=1e-6)
        details.append(f"{form} {want:.4f}")
    return ", ".join(details) + "; dL/dL_i = c_i exp(-s_i)"


def check_warmup_linear_decay():
    from ptft_keras import optimizers

    schedule = optimizers.WarmupLinearDecay(peak=1e-3, warmup_steps=10, total_steps=110)
    steps = [0, 5, 10, 60, 110, 200]
    got = [float(schedule(step)) for step in steps]
    want = [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
    return ", ".join(f"{step}:{value:.1e}" for step, value in zip(steps, got))


RUNNERS = {
    "backend": check_backend,
    "masked_mean_pooling": check_masked_mean_pooling,
    "sentence_embedding": check_sentence_embedding,
    "gradient_reversal": check_gradient_reversal,
    "tied_output": check_tied_output,
    "uncertainty_weighting": check_uncertainty_weighting,
    "warmup_linear_decay": check_warmup_linear_decay,
    "transformer_backbone": check_transformer_backbone,
    "transformer_backbone_prenorm": lambda: check_transformer_backbone(normalize_first=True),
    "lstm_backbone": check_lstm_backbone,
    "mlm_pretrainer": check_mlm_pretrainer,
}
assert tuple(RUNNERS) == CHECKS


def where(error):
    """file:line where ``error`` was raised: the innermost frame in ptft_keras/, else in this
    checkout (not its .venv), else the innermost frame."""
    root = Path(__file__).resolve().parents[1]
    frames = traceback.extract_tb(error.__traceback__)

    def under(frame, folder):
        return Path(frame.filename).resolve().is_relative_to(root / folder)

    ours = [f for f in frames if under(f, "ptft_keras")]
    ours = ours or [f for f in frames if under(f, "") and not under(f, ".venv")]
    frame = (ours or frames)[-1]
    path = Path(frame.filename).resolve()
    shown = path.relative_to(root) if path.is_relative_to(root) else path
    return f"{shown}:{frame.lineno}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the parity inputs and JAX outputs here (JSON)")
    args = parser.parse_args(argv)

    start, cpu = time.perf_counter(), time.process_time()
    import keras

    import ptft_keras.models  # noqa: F401  (keras-hub, and TF for its tokenizers: seconds)

    def took():
        return f"[{time.perf_counter() - start:.1f} s, cpu {time.process_time() - cpu:.1f} s]"

    print(f"# imports {took()}", flush=True)
    if args.out:  # first, so a later timeout leaves the parity check something to compare
        try:
            inputs = parity_inputs()
            outputs = parity_outputs(inputs)
            Path(args.out).write_text(json.dumps({
                "inputs": {k: v.tolist() for k, v in inputs.items()},
                "outputs": {k: v.tolist() for k, v in outputs.items()},
            }))
        except Exception:  # noqa: BLE001  (the checks below say what fails)
            traceback.print_exc(file=sys.stderr)
    failed = 0
    for name in CHECKS:
        keras.utils.set_random_seed(0)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            detail = RUNNERS[name]()
        except Exception as error:  # noqa: BLE001  (report every check, not the first)
            failed += 1
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            print(f"FAIL {name}: {type(error).__name__}: {message} ({where(error)})", flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            print(f"OK {name}: {detail} {took()}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported, or it is too late
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # XLA compiles each train step once and runs it once: at toy sizes its optimisation passes
    # cost more than they save (level 0 halves this script's CPU time, same numbers here).
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's ptft_keras
    sys.exit(main())
