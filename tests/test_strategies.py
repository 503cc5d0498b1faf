"""Each fine-tuning strategy trains exactly what it should, on our backbone and on keras-hub's.

The check is empirical: snapshot every variable, run training steps, see which ones moved.
"""

import keras
import keras_hub
import numpy as np
import pytest

from ptft_keras import finetuning, models, optimizers
from ptft_keras.models import TransformerBackbone

SEQ = 16
VOCAB = 100


def make(kind):
    """(backbone, classifier, inputs, labels) for a tiny randomly initialised model."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, VOCAB, size=(32, SEQ)).astype("int32")
    if kind == "ours":
        backbone = TransformerBackbone(VOCAB, max_sequence_length=SEQ, num_layers=2, hidden_dim=32,
                                       num_heads=2, intermediate_dim=64, dropout=0.0)
        inputs = {"token_ids": ids}
    else:
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=32,
            intermediate_dim=64, max_sequence_length=SEQ, dropout=0.0,
        )
        inputs = {"token_ids": ids, "segment_ids": np.zeros_like(ids),
                  "padding_mask": np.ones_like(ids)}
    model = models.build_classifier(backbone, dropout=0.0)
    labels = rng.integers(0, 2, size=32)
    return backbone, model, inputs, labels


def compile_(model, optimizer=None, eager=False):
    # eager: a step of these tiny models runs faster than tracing it (tests stay under a minute);
    # the gradual-unfreezing tests need the traced train function, so they keep it.
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False, run_eagerly=eager)


def snapshot(model):
    return {w.path: np.array(w.numpy()) for w in model.weights}


def changed(before, after):
    return {path for path in after if path in before and not np.allclose(before[path], after[path])}


def paths(model, *fragments):
    return {w.path for w in model.weights if any(f in w.path for f in fragments)}


def used(model):
    # keras-hub's pooled_dense is not on our classifier's path (CLS of the sequence output):
    # it gets no gradient under any strategy.
    return {w.path for w in model.weights if not w.path.startswith("pooled_dense")}


def key_bias(model):
    # Adding the same vector to every key shifts all attention scores of a query by the same
    # amount, which softmax ignores: the key bias's gradient is 0 up to round-off, so whether it
    # "moves" depends on Adam amplifying round-off. Leave it out of the comparison.
    return paths(model, "/key/bias")


TOP = {"ours": "block_1/", "hub": "transformer_layer_1/"}


@pytest.fixture(scope="module", params=["ours", "hub"])
def kind(request):
    return request.param


@pytest.mark.parametrize("strategy", ["head", "freeze_bottom", "full", "llrd", "lora"])
def test_strategy_trains_only_its_weights(kind, strategy):
    backbone, model, x, y = make(kind)
    optimizer = keras.optimizers.Adam(1e-2)
    if strategy in finetuning.STRATEGIES:
        finetuning.apply_strategy(backbone, strategy, k=1 if strategy == "freeze_bottom" else None)
    elif strategy == "llrd":
        optimizer = optimizers.layerwise_optimizer(optimizer, finetuning.layerwise_lr_multipliers(backbone, 0.5))
    else:
        report = finetuning.apply_lora(backbone, rank=2)
        assert report["trainable"] < report["total"] / 5
    compile_(model, optimizer, eager=True)
    before = snapshot(model)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)  # LoRA: B starts at 0, so A only gets a gradient from step 2
    moved = changed(before, snapshot(model)) - key_bias(model)
    head = paths(model, "head/")
    expected = {
        "head": head,
        "freeze_bottom": head | paths(model, TOP[kind]),
        "full": used(model),
        "llrd": used(model),
        "lora": head | {p for p in paths(model, "lora_kernel")
                        if "/query/" in p or "/value/" in p},
    }[strategy] - key_bias(model)
    assert moved == expected
    trainable, total = finetuning.count_params(model)
    assert trainable == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert 0 < trainable <= total and f"{total:,}" in finetuning.describe(model)


def test_gradual_unfreezing_unfreezes_top_block_first(kind):
    backbone, model, x, y = make(kind)
    finetuning.apply_strategy(backbone, "head")  # the optimizer gets built on the head only ...
    compile_(model)
    unfreezer = finetuning.GradualUnfreezing(backbone)
    snaps = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snaps.append(snapshot(model)))
    before = snapshot(model)
    model.fit(x, y, batch_size=32, epochs=4, callbacks=[unfreezer, record], verbose=0)
    newly = []
    for snap in snaps:
        newly.append(sorted({p.split("/")[0] for p in changed(before, snap)}))
        before = snap
    top, bottom = TOP[kind].rstrip("/"), TOP[kind].replace("1", "0").rstrip("/")
    assert newly[0] == ["head"]
    assert newly[1] == sorted(["head", top])
    assert newly[2] == sorted(["head", top, bottom])
    assert set(newly[3]) > {"head", top, bottom}  # + embeddings
    assert unfreezer.unfreezing_order()[:2] == [top, bottom]
    assert [entry["trainable"] for entry in unfreezer.log] == sorted(
        entry["trainable"] for entry in unfreezer.log)
    # ... and the callback rebuilt it on every weight it unfroze.
    assert len(model.optimizer._trainable_variables) == len(model.trainable_variables)


def test_without_retracing_an_unfrozen_block_does_not_learn():
    """Negative control: flags alone do not reach the already-traced train function."""
    backbone, model, x, y = make("ours")
    compile_(model)
    model.optimizer.build(model.trainable_variables)  # knows every weight: not the issue here
    finetuning.unfreeze_top(backbone, 0)
    model.train_on_batch(x, y)  # traces the train function with the head only
    finetuning.unfreeze_top(backbone, 1)
    before = snapshot(model)
    model.train_on_batch(x, y)
    assert not changed(before, snapshot(model)) & paths(model, "block_1/")
    model.make_train_function(force=True)
    model.train_on_batch(x, y)
    assert changed(before, snapshot(model)) & paths(model, "block_1/")


def _grads(model, x, y):
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    # Dense tensors: the embedding's gradient comes as IndexedSlices (rows may repeat).
    return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_llrd_step_sizes(base):
    backbone, model, x, y = make("ours")
    lr, decay = 0.1, 0.5
    multipliers = finetuning.layerwise_lr_multipliers(backbone, decay)
    inner = keras.optimizers.SGD(lr) if base == "sgd" else keras.optimizers.Adam(lr)
    optimizer = optimizers.layerwise_optimizer(inner, multipliers)
    assert type(optimizer).__name__ == f"Layerwise{type(inner).__name__}"
    variables = model.trainable_variables
    optimizer.build(variables)
    grads = _grads(model, x, y)
    before = snapshot(model)
    optimizer.apply(grads, variables)
    depth = {"head": 0, "block_1": 1, "block_0": 2, "embeddings": 3, "embeddings_norm": 3}
    seen = set()
    for variable, grad in zip(variables, grads):
        grad = keras.ops.convert_to_numpy(grad)
        rate = lr * decay ** depth[variable.path.split("/")[0]]
        step = variable.numpy() - before[variable.path]
        if base == "sgd":  # exactly lr * decay**d * grad
            # float32 steps of weights near 1 carry ~1e-7 round-off
            np.testing.assert_allclose(step, -rate * grad, rtol=1e-4, atol=3e-7)
        else:  # Adam's first step, Keras' formula: rate * g * sqrt(1-b2) / (sqrt(1-b2)|g| + eps)
            root = np.sqrt(1 - 0.999)
            expected = -rate * grad * root / (root * np.abs(grad) + 1e-7)
            np.testing.assert_allclose(step, expected, rtol=1e-3, atol=3e-7)
            # i.e. ~ the group's own rate times sign(g) wherever |g| >> eps
            big = np.abs(grad) > 1e-3
            np.testing.assert_allclose(step[big], -rate * np.sign(grad[big]), rtol=5e-3)
        seen.add(depth[variable.path.split("/")[0]])
    assert seen == {0, 1, 2, 3}
    assert finetuning.group_learning_rates(backbone, lr, decay) == [
        ("head", lr), ("block_1", lr * decay), ("block_0", lr * decay**2),
        ("embeddings", lr * decay**3)]
    # Serializable: the multipliers travel in the config.
    clone = type(optimizer).from_config(optimizer.get_config())
    assert clone.lr_multipliers == multipliers


def test_scaling_gradients_is_not_scaling_adams_learning_rate():
    grad = np.array([0.5, -2.0, 1e-2], "float32")

    def first_step(grad_scale, lr):
        variable = keras.Variable(np.ones(3, "float32"))
        keras.optimizers.Adam(lr).apply([grad * grad_scale], [variable])
        return variable.numpy() - 1.0

    full = first_step(1.0, 0.1)
    np.testing.assert_allclose(first_step(0.1, 0.1), full, rtol=1e-2)  # 10x smaller grad: same
    np.testing.assert_allclose(first_step(1.0, 0.01), full / 10, rtol=1e-4)  # 10x smaller lr


def test_lora_merge_gives_the_same_outputs(kind):
    backbone, model, x, y = make(kind)
    finetuning.apply_lora(backbone, rank=2, alpha=4)
    compile_(model, eager=True)
    for _ in range(3):
        model.train_on_batch(x, y)
    layer = finetuning.lora_layers(backbone)[0]
    assert np.abs(keras.ops.convert_to_numpy(finetuning.lora_delta(layer))).max() > 0
    # Keras' own merged view of the kernel is kernel + (alpha/rank) A B.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.kernel),
        layer._kernel.numpy() + keras.ops.convert_to_numpy(finetuning.lora_delta(layer)), atol=1e-6)
    backbone_inputs = {k: v for k, v in x.items()}
    reference = _sequence(backbone(backbone_inputs))
    plain = finetuning.merge_lora(backbone)
    assert not any("lora" in w.path for w in plain.weights)
    np.testing.assert_allclose(_sequence(plain(backbone_inputs)), reference, atol=1e-5)
    finetuning.merge_lora(backbone, in_place=True)
    np.testing.assert_allclose(_sequence(backbone(backbone_inputs)), reference, atol=1e-5)
    np.testing.assert_allclose(layer.lora_kernel_b.numpy(), 0.0)


def _sequence(outputs):
    if isinstance(outputs, dict):
        outputs = outputs["sequence_output"]
    return keras.ops.convert_to_numpy(outputs)


def test_lora_needs_projection_layers():
    from ptft_keras.models import LSTMBackbone

    with pytest.raises(ValueError, match="LoRA needs"):
        finetuning.apply_lora(LSTMBackbone(50, embedding_dim=8, hidden_dim=8))


def test_finetune_runs_every_strategy():
    trained = {}
    for strategy in finetuning.ALL_STRATEGIES:
        backbone, model, x, y = make("ours")
        result = finetuning.finetune(model, (x, y), strategy=strategy, k=1,
                                     epochs=2 if strategy == "gradual" else 1,
                                     batch_size=32, jit_compile=False)
        assert np.isfinite(result.history["loss"]).all()
        trained[strategy] = result.trainable
        if strategy == "full":
            total = result.total
    assert trained["full"] == trained["llrd"] == total
    assert trained["head"] < trained["lora"] < trained["freeze_bottom"] < total
    # 2 epochs of gradual unfreezing: head, then head + top block = freeze_bottom(k=1)
    assert trained["gradual"] == trained["freeze_bottom"]


def test_keras_adam_counts_steps_globally():
    """What the module docstring warns about: a variable that joins late (gradual unfreezing)
    gets Adam's bias correction for the global step, so its first steps exceed the lr."""
    early, late = keras.Variable(np.zeros(1, "float32")), keras.Variable(np.zeros(1, "float32"))
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build([early, late])
    grad = np.ones(1, "float32")
    for _ in range(200):
        optimizer.apply([grad], [early])
    steps = []
    for _ in range(10):
        before = late.numpy().copy()
        optimizer.apply([grad, grad], [early, late])
        steps.append(float(np.abs(late.numpy() - before)[0]) / 0.01)
    assert min(steps) > 1.2 and max(steps) > 2.5  # a fresh Adam would step lr * 1.0 here
