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

import numpy as np

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


