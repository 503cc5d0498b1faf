"""Scaling laws, measured on our corpus, and the arithmetic of a GPT-3-sized run (chapter 5.1).

Measured:

    frame = run_scaling_grid(train_ids, val_ids, vocabulary_size, sizes=[32, 64, 96],
                             token_budgets=[8_000, 16_000, 32_000])
    fit = fit_power_law(frame.query("tokens == 32000").non_embedding_params,
                        frame.query("tokens == 32000").val_loss)
    predict(fit, 1e6)                        # extrapolated loss of a 1M-parameter model

Computed (no training; formulas checked against built keras-hub models in the tests):

    n = transformer_params(**GPT3_175B_CONFIG)   # ~174.6e9
    training_flops(n, GPT3_175B["tokens"])       # ~3.1e23 = 6 N D
    training_memory(n, "bf16-mixed")["total"]    # 16 bytes per parameter with Adam
    gpus_needed(..., gpu_memory_gib=80)

Parameter counts follow Kaplan et al. (2020): N = non-embedding parameters, the ones whose count
predicts loss; embeddings are reported separately.
"""

import dataclasses
import math
import time

import keras
import keras_hub
import numpy as np

from ptft_keras import objectives

# --- fitting a power law --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """L(x) = a * x**(-alpha) + c  (c = 0 without an offset).

    r2: coefficient of determination of log L (the space the fit minimises).
    alpha_se: standard error of alpha; alpha_ci: its 95% interval (Student t with n - p
    degrees of freedom, p = 2 or 3 parameters), so a fit to 3 points says honestly how little
    it knows. ``c_se`` is None without an offset.
    """

    a: float
    alpha: float
    c: float
    r2: float
    alpha_se: float
    alpha_ci: tuple
    c_se: float | None
    n: int
    with_offset: bool


def _check_points(x, y, min_points):
    x = np.asarray(x, dtype="float64").ravel()
    y = np.asarray(y, dtype="float64").ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}.")
    if x.size < min_points:
        raise ValueError(
            f"A power-law fit needs at least {min_points} points here, got {x.size}: measure "
            f"more model or data sizes (fitting {min_points - 1} parameters to fewer points "
            f"leaves nothing to estimate the uncertainty from)."
        )
    for name, values in (("x", x), ("y", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(
                f"{name} has NaN or infinite values at positions {bad.tolist()}: drop those "
                f"runs (a diverged run has no loss to fit)."
            )
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise ValueError(
                f"{name} must be positive for a power law (it is fitted in log space), but "
                f"positions {bad.tolist()} are <= 0."
            )
    if np.unique(x).size < 2:
        raise ValueError("All x values are equal: the exponent cannot be estimated.")
    return x, y


def _r2(log_y, log_pred):
    total = np.sum((log_y - log_y.mean()) ** 2)
    return float(1.0 - np.sum((log_y - log_pred) ** 2) / total) if total > 0 else 1.0


def _t95(dof):
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def fit_power_law(x, y, with_offset=False):
    """Fit L(x) = a * x**(-alpha) (+ c) to measured points; returns a ``PowerLawFit``.

    x: (n,) positive sizes (parameters, tokens, FLOPs). y: (n,) positive losses.
    Without offset: ordinary least squares of log y on log x (exact, closed form); alpha's
    standard error is the OLS slope's. With offset (the irreducible loss c, 0 <= c < min y):
    least squares on log y, started from the best c of a grid; standard errors from the
    Jacobian at the optimum. Needs >= 3 points (>= 4 with an offset).
    """
    x, y = _check_points(x, y, 4 if with_offset else 3)
    lx, ly = np.log(x), np.log(y)
    n = x.size
    if not with_offset:
        slope, intercept = np.polyfit(lx, ly, 1)
        residual = ly - (intercept + slope * lx)
        dof = n - 2
        sigma2 = np.sum(residual**2) / dof
        se = float(np.sqrt(sigma2 / np.sum((lx - lx.mean()) ** 2)))
        alpha = float(-slope)
        half = _t95(dof) * se
        return PowerLawFit(
            a=float(np.exp(intercept)), alpha=alpha, c=0.0,
            r2=_r2(ly, intercept + slope * lx), alpha_se=se,
            alpha_ci=(alpha - half, alpha + half), c_se=None, n=n, with_offset=False,
        )

    from scipy import optimize

    def residuals(p):
        log_a, alpha, c = p
        return np.log(np.exp(log_a - alpha * lx) + c) - ly

    # Start from the c (on a grid below min y) whose log(y - c) is the straightest line in
    # log x: the 3-parameter problem is badly conditioned from a poor start.
    top = y.min() * (1 - 1e-6)
    best = None
    for c in np.linspace(0.0, top, 200, endpoint=False):
        slope, intercept = np.polyfit(lx, np.log(y - c), 1)
        start = np.array([intercept, -slope, c])
        sse = float(np.sum(residuals(start) ** 2))
        if best is None or sse < best[0]:
            best = (sse, start)
    result = optimize.least_squares(
        residuals, best[1], bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, top]),
        x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15,
    )
    log_a, alpha, c = (float(v) for v in result.x)
    dof = n - 3
    sigma2 = np.sum(result.fun**2) / dof
    # Covariance (J^T J)^-1 sigma^2; pinv because c sits on its bound for a pure power law.
    cov = np.linalg.pinv(result.jac.T @ result.jac) * sigma2
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    half = _t95(dof) * se[1]
    return PowerLawFit(
        a=float(np.exp(log_a)), alpha=alpha, c=c, r2=_r2(ly, ly + result.fun),
        alpha_se=float(se[1]), alpha_ci=(float(alpha - half), float(alpha + half)),
        c_se=float(se[2]),
        n=n, with_offset=True,
    )


def predict(fit, x):
    """L(x) = a * x**(-alpha) + c for a ``PowerLawFit``; x scalar or array."""
    x = np.asarray(x, dtype="float64")
    if np.any(x <= 0):
        raise ValueError("predict needs positive x (sizes, token counts or FLOPs).")
    return fit.a * x ** (-fit.alpha) + fit.c


# --- transformer arithmetic -----------------------------------------------------------------------
GPT3_175B = dict(n_layers=96, d_model=12288, n_heads=96, context=2048, vocab_size=50257,
                 tokens=300e9)
"""GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, d_model 12288, 96 heads of 128,
context 2048, GPT-2's 50257-token BPE vocabulary, trained on 300B tokens."""

GPT3_175B_CONFIG = {k: GPT3_175B[k] for k in ("n_layers", "d_model", "vocab_size", "context")}


def transformer_param_counts(n_layers, d_model, vocab_size, context, d_ff=None, tied=True):
    """Parameters of a GPT-2/GPT-3 decoder, part by part (keras-hub ``GPT2Backbone`` layout).

    Per layer: attention Q, K, V, O projections with biases 4 d^2 + 4 d; feed-forward
    d -> d_ff -> d with biases 2 d d_ff + d_ff + d; two layer norms 4 d. With d_ff = 4 d
    (default) that is 12 d^2 + 13 d. Plus token embedding V d, learned positions context x d,
    final layer norm 2 d, and an output projection V d only if not tied to the embedding.
    Returns a dict; ``non_embedding`` = total - token and position embeddings (Kaplan's N).
    """
    d_ff = 4 * d_model if d_ff is None else d_ff
    per_layer = 4 * d_model**2 + 4 * d_model + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model
    counts = {
        "token_embedding": vocab_size * d_model,
        "position_embedding": context * d_model,
        "layers": n_layers * per_layer,
        "final_norm": 2 * d_model,
        "output": 0 if tied else vocab_size * d_model,
    }
    counts["total"] = sum(counts.values())
    counts["non_embedding"] = (
        counts["total"] - counts["token_embedding"] - counts["position_embedding"]
    )
    return counts


def transformer_params(n_layers, d_model, vocab_size, context, d_ff=None, tied=True):
    """Total parameters of a GPT-style decoder (see ``transformer_param_counts``)."""
    return transformer_param_counts(n_layers, d_model, vocab_size, context, d_ff, tied)["total"]


def training_flops(n_params, n_tokens, n_layers=None, context=None, d_model=None):
    """Training compute C ~ 6 N D floating-point operations (Kaplan et al. 2020).

    Each parameter does a multiply and an add per token forward (2 N D) and twice that
    backward (4 N D: gradients for activations and for weights). Give ``n_layers``,
    ``context`` and ``d_model`` to add attention's score/value products, 6 L n_ctx d per
    token, which 6 N D leaves out (about 1% for GPT-3, large for long contexts).
    """
    if n_params <= 0 or n_tokens <= 0:
        raise ValueError("n_params and n_tokens must be positive.")
    flops = 6.0 * n_params * n_tokens
    if None not in (n_layers, context, d_model):
        flops += 6.0 * n_layers * context * d_model * n_tokens
    return flops


# bytes per parameter: (weights, gradients, fp32 master copy)
_PRECISIONS = {
    "fp32": (4, 4, 0),
    "bf16-mixed": (2, 2, 4),  # compute in bf16, keep fp32 master weights for the update
    "fp16-mixed": (2, 2, 4),
    "bf16": (2, 2, 0),  # pure bf16 training: no master copy (small updates get rounded away)
}
_OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "momentum": 1, "sgd": 0}


def training_memory(n_params, precision="fp32", optimizer="adam"):
    """Bytes of model state during training (no activations, no buffers), as a dict.

    Per parameter: fp32 + Adam = 4 (weights) + 4 (gradients) + 8 (two fp32 moments) = 16;
    mixed precision + Adam = 2 + 2 + 4 (fp32 master weights) + 8 = 16 as well (ZeRO paper,
    Rajbhandari et al. 2020: "2 + 2 + 12"); mixed precision saves activation memory and
    time, not state. Optimizer states are fp32 except in pure ``"bf16"`` training.
    Keys: weights, gradients, master_weights, optimizer_states, total, bytes_per_param.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: one of {', '.join(_PRECISIONS)}.")
    if optimizer not in _OPTIMIZER_STATES:
        raise ValueError(
            f"Unknown optimizer {optimizer!r}: one of {', '.join(_OPTIMIZER_STATES)}."
        )
    weights, gradients, master = _PRECISIONS[precision]
    state_bytes = 2 if precision == "bf16" else 4
    per_param = {
        "weights": weights,
        "gradients": gradients,
        "master_weights": master,
        "optimizer_states": _OPTIMIZER_STATES[optimizer] * state_bytes,
    }
    out = {key: float(value * n_params) for key, value in per_param.items()}
    out["bytes_per_param"] = sum(per_param.values())
    out["total"] = float(out["bytes_per_param"] * n_params)
    return out


def gpus_needed(n_bytes, gpu_memory_gib=80.0):
    """Smallest number of GPUs whose memory holds ``n_bytes`` if split evenly (ZeRO-3 /
    FSDP style sharding); activations and framework overhead need more on top."""
    if gpu_memory_gib <= 0:
        raise ValueError("gpu_memory_gib must be positive.")
    return int(math.ceil(n_bytes / (gpu_memory_gib * 2**30)))


def training_days(flops, n_gpus, peak_flops_per_gpu, utilization=0.4):
    """Wall-clock days for ``flops`` on ``n_gpus`` at ``utilization`` of their peak."""
    return flops / (n_gpus * peak_flops_per_gpu * utilization) / 86400.0


# --- measuring a scaling grid ---------------------------------------------------------------------
def model_size(hidden_dim, num_layers=2, num_heads=None, intermediate_dim=None):
    """A GPT-2 size dict for ``run_scaling_grid``: heads of 16 dims (at least 1), d_ff = 4 d."""
    return dict(
        num_layers=int(num_layers), hidden_dim=int(hidden_dim),
        num_heads=int(num_heads or max(1, hidden_dim // 16)),
        intermediate_dim=int(intermediate_dim or 4 * hidden_dim),
    )


def _as_size(size):
    if isinstance(size, (int, np.integer)):
        return model_size(int(size))
    try:
        return model_size(**size)
    except TypeError as err:
        raise ValueError(
            f"A size is a hidden dim (int) or a dict with hidden_dim and optionally "
            f"num_layers, num_heads, intermediate_dim; got {size!r} ({err})."
        ) from None


def _lstm_lm(vocabulary_size, sequence_length, size, learning_rate):
    """A causal LSTM language model and its parameter counts (embeddings excluded, as Kaplan)."""
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, size["hidden_dim"], name="token_embedding")(tokens)
    for i in range(size["num_layers"]):
        x = keras.layers.LSTM(size["hidden_dim"], return_sequences=True, name=f"lstm_{i}")(x)
    logits = keras.layers.Dense(vocabulary_size, name="lm_head")(x)        # (batch, seq, vocab)
    model = keras.Model(tokens, logits, name="lstm_lm")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    total = int(model.count_params())
    embedding = vocabulary_size * size["hidden_dim"]
    return model, {"total": total, "non_embedding": total - embedding}


def _blocks(ids, block_length, name):
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D array of integer token ids (one stream; join documents "
            f"with a separator token, e.g. np.concatenate), got shape {ids.shape}, "
            f"dtype {ids.dtype}."
        )
    return objectives.chunk_token_stream([ids], block_length)


def run_scaling_grid(
    train_ids, val_ids, vocabulary_size, sizes, token_budgets, sequence_length=64,
    batch_size=16, learning_rate=3e-3, seed=0, verbose=False, family="gpt2",
):
    """Train one causal LM per size; its validation loss after each token budget.

    family: "gpt2" (keras-hub GPT2Backbone + ``objectives.CausalLMPretrainer``) or "lstm"
    (embedding -> one unidirectional LSTM of width hidden_dim -> softmax; num_layers LSTMs if a
    size dict says so). At CPU budgets (1e5-1e6 tokens) a tiny Transformer sits on the unigram
    plateau for a random number of steps, which scrambles the size axis; an LSTM leaves it
    within a few dozen steps, so its sizes come out in order. Same objective either way.

    train_ids, val_ids: 1-D int token streams. sizes: hidden dims (ints, see ``model_size``)
    or size dicts. token_budgets: training tokens; the train stream is cut into blocks of
    sequence_length + 1, shuffled once with ``seed`` and read in that order, never repeating a
    token (so tokens seen = data size). Returns a pandas DataFrame, one row per (size, budget):
    size, num_layers, hidden_dim, params (total), non_embedding_params, tokens (actually
    seen: whole batches), steps, val_loss (mean token cross-entropy, nats), train_loss (mean
    over the last segment), flops (6 N D with non-embedding N), seconds (training so far).

    One run per size serves every budget: the learning rate is constant, so a run stopped
    after D1 tokens is exactly the first D1 tokens of a run to D2. That is why the grid costs
    one model per size, not sizes x budgets (with a decaying schedule it would not be exact).
    Models are GPT-2 backbones (keras-hub) + ``objectives.CausalLMPretrainer``, dropout 0.

    What to expect on a CPU (measured on the course corpus, 1e4-3e5 tokens): the loss falls
    clearly with tokens, but differs little, and not always in order, between sizes: every
    model is still limited by its number of steps (Kaplan et al.'s learning curves of all sizes
    also overlap early). A size trend needs the smallest models to saturate first: more tokens
    (FULL mode) or a task they can saturate on.
    """
    import pandas as pd

    check_ids = np.concatenate([np.asarray(train_ids).ravel(), np.asarray(val_ids).ravel()])
    if check_ids.size and (check_ids.min() < 0 or check_ids.max() >= vocabulary_size):
        raise ValueError(
            f"Token ids must lie in [0, {vocabulary_size}); found {check_ids.min()}..."
            f"{check_ids.max()}. Pass the tokenizer's vocabulary size."
        )
    train = _blocks(train_ids, sequence_length + 1, "train_ids")
    # A fixed random order of blocks: every budget is a random sample of the corpus (not its
    # first chapters), and a smaller budget's blocks are the start of a larger one's.
    train = train[np.random.default_rng(seed).permutation(len(train))]
    val = _blocks(val_ids, sequence_length + 1, "val_ids")
    if len(val) == 0:
        raise ValueError(f"val_ids holds fewer than {sequence_length + 1} tokens.")
    budgets = sorted(int(b) for b in token_budgets)
    if not budgets or budgets[0] < batch_size * sequence_length:
        raise ValueError(
            f"Every token budget must cover at least one batch ({batch_size * sequence_length} "
            f"tokens), got {token_budgets}."
        )
    tokens_per_step = batch_size * sequence_length
    steps = [b // tokens_per_step for b in budgets]
    if steps[-1] * batch_size > len(train):
        raise ValueError(
            f"The largest budget ({budgets[-1]} tokens) needs {steps[-1] * batch_size} "
            f"blocks of {sequence_length + 1}, but train_ids holds {len(train)} "
            f"({len(train) * sequence_length} trainable tokens): lower it or pass more text."
        )
    x_train, y_train, w_train = objectives.causal_lm_arrays(train)
    x_val, y_val, w_val = objectives.causal_lm_arrays(val)

    if family not in ("gpt2", "lstm"):
        raise ValueError(f"family must be 'gpt2' or 'lstm', got {family!r}.")
    rows = []
    for size in sizes:
        size = _as_size(size)
        keras.utils.set_random_seed(seed)
        if family == "gpt2":
            backbone = keras_hub.models.GPT2Backbone(
                vocabulary_size=vocabulary_size, max_sequence_length=sequence_length,
                dropout=0.0, **size,
            )
            model = objectives.compile_lm(objectives.CausalLMPretrainer(backbone), learning_rate)
            counts = transformer_param_counts(
                size["num_layers"], size["hidden_dim"], vocabulary_size, sequence_length,
                size["intermediate_dim"],
            )
            total = int(backbone.count_params())
        else:
            model, counts = _lstm_lm(vocabulary_size, sequence_length, size, learning_rate)
            total = counts["total"]
        label = ("L" if family == "gpt2" else "LSTM") + f"{size['num_layers']}-d{size['hidden_dim']}"
        # The LSTM needs no padding mask: every block is full length.
        feed = (lambda x: x) if family == "gpt2" else (lambda x: x["token_ids"])
        done, seconds = 0, 0.0
        for budget, step in zip(budgets, steps):
            part = slice(done * batch_size, step * batch_size)
            train_loss = float("nan")
            if step > done:
                start = time.perf_counter()
                history = model.fit(
                    feed({k: v[part] for k, v in x_train.items()}), y_train[part],
                    sample_weight=w_train[part],
                    batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                )
                seconds += time.perf_counter() - start
                train_loss = float(history.history["loss"][-1])
            done = step
            val_loss = float(model.evaluate(feed(x_val), y_val, sample_weight=w_val, batch_size=64,
                                            verbose=0, return_dict=True)["loss"])
            tokens = step * tokens_per_step
            rows.append(dict(
                size=label, num_layers=size["num_layers"], hidden_dim=size["hidden_dim"],
                params=total, non_embedding_params=counts["non_embedding"], tokens=tokens,
                steps=step, val_loss=val_loss, train_loss=train_loss,
                flops=training_flops(counts["non_embedding"], tokens), seconds=seconds,
            ))
            if verbose:
                print(f"{label:>10} {tokens:>9,} tokens  val loss {val_loss:.3f}  "
                      f"({seconds:.1f} s)")
    return pd.DataFrame(rows)
