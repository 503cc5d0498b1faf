"""Manufacturing example (chapter 5.2): pre-train on unlabeled machine signals, then fine-tune a
fault classifier from a handful of labels.

Factories record far more sensor data than anyone labels. Masked reconstruction uses the
unlabeled part: hide random time spans of a multichannel series and train an encoder to fill
them in from the context (the time-series analogue of BERT's masked language modelling). The
encoder then starts the fault classifier, which sees only a few labelled series per class.

- ``make_sensor_data``: simulated rotating-machine vibration (documented below; no real plant
  data ships with any package we can install).
- ``mask_series``: span masking, returns (masked input, target, per-step mask weights).
- ``build_sensor_encoder``: dilated residual 1-D conv net, (B, L, C) -> (B, L, width).
- ``build_masked_pretrainer`` / ``compile_pretrainer``: encoder + per-step linear head; the
  loss is the mean squared error over the *masked* steps only.
- ``build_fault_classifier``: encoder + pooling + dense head, logits (B, num_classes).
- ``few_label_comparison``: pre-trained vs. from-scratch encoders at several label budgets,
  over several seeds, on one held-out test set.

Pre-training is not guaranteed to pay: measure it. On this simulator, with the defaults, the
pre-trained encoder did not beat the one trained from scratch by more than the spread over
seeds (5 and 10 labels per class). A dilated conv net with max pooling is already a strong
few-label learner here, even with random weights (random convolution features are a known,
strong time-series baseline: ROCKET, Dempster et al. 2020), and masked reconstruction of
harmonic signals is largely solved by linear interpolation, which teaches little about the
fault classes.
"""


import copy

import numpy as np

from ptft_keras.data.datasets import EpochDataset

CLASS_NAMES = ("normal", "imbalance", "misalignment", "bearing_fault")


# --- data ----------------------------------------------------------------------------------------
def make_sensor_data(n, length=128, channels=3, fault_rate=0.75, seed=0):
    """Simulated vibration of a rotating machine: (x float32 (n, length, channels), y int32 (n,),
    class names).

    One record is one time window of ``length`` samples from ``channels`` accelerometers
    (channel 0 horizontal, 1 vertical, 2 axial, then repeating that pattern). Each record draws
    its own machine state, so no two look alike:

    - shaft speed: f_r in [2, 8] turns per window (a variable-speed drive), drifting linearly
      by up to +-10% over the window; random phase per record and per channel (the sensors sit
      at different angles);
    - a healthy machine shows harmonics of f_r: 1x with amplitude 0.5-1.0, 2x 0.05-0.25,
      3x 0-0.1, each slowly amplitude-modulated by up to 20%;
    - per-channel gains 0.9-1.1 (radial channels; calibrated sensors) and 0.4-0.6 (axial), an
      overall transmission gain 0.85-1.15 per record, and white noise with standard deviation
      0.15-0.35.

    Classes (``y`` indexes ``CLASS_NAMES``):

    0 normal - as above.
    1 imbalance - a heavier spot on the rotor: the 1x harmonic grows 1.8-2.6 times on the radial
      channels (the axial one barely sees it).
    2 misalignment - shafts out of line: a strong 2x harmonic (0.5-0.9) on every channel,
      boosted 1.6 times on the axial one (which raises the axial vibration about 1.5 times),
      and a slightly raised 3x.
    3 bearing_fault - a defect on a bearing race: short, decaying bursts ("impulses") repeating
      at 3.0-3.6 times f_r (a non-integer multiple, as for real bearing defect frequencies),
      ringing at a structural resonance of 20-30 cycles per window, amplitude 0.6-1.2 with 20%
      jitter from impact to impact.

    ``fault_rate`` is the share of faulty records, split evenly over the three fault classes;
    the default 0.75 gives four balanced classes. Rows are shuffled. Deterministic for a seed.
    """
    if n < 1 or length < 16 or channels < 1:
        raise ValueError(
            f"need n >= 1, length >= 16, channels >= 1; got {n}, {length}, {channels}."
        )
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate is a share of records in [0, 1], got {fault_rate}.")
    rng = np.random.default_rng(seed)
    n_faulty = int(round(n * fault_rate))
    counts = [n - n_faulty] + [n_faulty // 3 + (i < n_faulty % 3) for i in range(3)]
    y = rng.permutation(np.repeat(np.arange(4), counts)).astype("int32")

    t = np.arange(length) / length  # time in windows, (L,)
    u = lambda low, high, *shape: rng.uniform(low, high, size=shape or (n,))  # noqa: E731
    speed = u(2.0, 8.0)[:, None] * (1.0 + u(-0.1, 0.1)[:, None] * (t - 0.5))  # (n, L)
    turns = np.cumsum(speed, axis=1) / length  # shaft angle / 2pi, (n, L)

    axial = (np.arange(channels) % 3) == 2
    gain = np.where(axial, u(0.4, 0.6, n, channels), u(0.9, 1.1, n, channels))  # (n, C)
    phase = u(0, 2 * np.pi, n, channels, 3)  # per channel and harmonic
    amp = np.stack([u(0.5, 1.0), u(0.05, 0.25), u(0.0, 0.1)], axis=1)  # (n, 3) harmonics
    amp_c = np.repeat(amp[:, None, :], channels, axis=1)  # (n, C, 3)
    imbalance, misalign, bearing = y == 1, y == 2, y == 3
    amp_c[imbalance, :, 0] *= np.where(axial, 1.1, u(1.8, 2.6, int(imbalance.sum()), 1))
    mis = int(misalign.sum())
    amp_c[misalign, :, 1] = u(0.5, 0.9, mis, 1) * np.where(axial, 1.6, 1.0)
    amp_c[misalign, :, 2] += u(0.05, 0.2, mis, 1)

    modulation = 1.0 + u(0.0, 0.2)[:, None] * np.sin(
        2 * np.pi * u(0.5, 2.0)[:, None] * t + u(0, 2 * np.pi)[:, None]
    )  # (n, L)
    x = np.zeros((n, length, channels))
    for h in range(3):  # harmonics 1x, 2x, 3x
        wave = np.sin(2 * np.pi * (h + 1) * turns[:, :, None] + phase[:, None, :, h])
        x += amp_c[:, None, :, h] * wave
    x *= modulation[:, :, None]

    for row in np.flatnonzero(bearing):  # few rows, short loops: clarity over vectorisation
        rate = rng.uniform(3.0, 3.6) * speed[row].mean()  # impacts per window
        resonance, amplitude = rng.uniform(20, 30), rng.uniform(0.6, 1.2)
        start = rng.uniform(0, 1.0 / rate)
        for impact in np.arange(start, 1.0, 1.0 / rate):
            dt = t - impact
            ring = np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) * length / 2.5), 0.0)
            burst = amplitude * rng.uniform(0.8, 1.2) * ring * np.sin(2 * np.pi * resonance * dt)
            x[row] += burst[:, None] * np.where(axial, 0.5, 1.0)

    x *= gain[:, None, :] * u(0.85, 1.15)[:, None, None]
    x += rng.normal(size=x.shape) * u(0.15, 0.35)[:, None, None]
    return x.astype("float32"), y, CLASS_NAMES


def mask_series(x, mask_rate=0.25, span=8, seed=0):
    """Span masking of series x (N, L, C): (masked (N, L, C), target (N, L, C), weights (N, L)).

    Every series gets k = round(L * mask_rate / span) (at least 1) non-overlapping spans of
    ``span`` steps, placed uniformly at random, so exactly k * span steps are masked. Masked
    steps are zero in every channel (the signals are centred, so 0 is an uninformative value);
    ``target`` is the original x, ``weights`` is 1.0 at masked steps and 0.0 elsewhere. Spans,
    not single steps: a lone missing sample could be interpolated from its neighbours, which
    teaches nothing about the machine.
    """
    x = np.asarray(x, dtype="float32")
    if x.ndim != 3:
        raise ValueError(f"mask_series expects (N, length, channels), got shape {x.shape}.")
    n, length, _ = x.shape
    if not 0.0 < mask_rate < 1.0 or not 1 <= span <= length:
        raise ValueError(
            f"need 0 < mask_rate < 1 and 1 <= span <= length; got {mask_rate}, {span}."
        )
    k = max(int(round(length * mask_rate / span)), 1)
    if k * span > length:
        raise ValueError(f"{k} spans of {span} do not fit in {length} steps: lower mask_rate.")
    # Stars and bars: arrange k spans among the (length - k * span) unmasked steps. Choosing k
    # of the (free + k) slots uniformly gives every non-overlapping placement the same chance.
    free = length - k * span
    rng = np.random.default_rng(seed)
    slots = np.sort(np.argsort(rng.random((n, free + k)), axis=1)[:, :k], axis=1)
    starts = slots + np.arange(k) * (span - 1)  # slot s_i has i spans (not 1-step items) before
    steps = starts[:, :, None] + np.arange(span)  # (N, k, span)
    weights = np.zeros((n, length), dtype="float32")
    np.put_along_axis(weights, steps.reshape(n, -1), 1.0, axis=1)
    masked = x * (1.0 - weights[:, :, None])
    return masked, x.copy(), weights


class MaskedSeriesBatches(EpochDataset):
    """(masked, target, weights) batches for ``fit``, re-masked every epoch (dynamic masking)."""

    shuffle_after = False  # the order is drawn first, then the spans of the ordered rows

    def __init__(self, x, batch_size=64, mask_rate=0.25, span=8, seed=0, **kwargs):
        self.x = np.asarray(x, dtype="float32")
        self.mask_rate, self.span = mask_rate, span
        super().__init__(batch_size=batch_size, seed=seed, **kwargs)

    def make_epoch(self, rng):
        # The spans come from a generator in the same start state as the one the order is drawn
        # from (as they always did), so the batches of each (seed, epoch) stay the same.
        spans_rng = copy.deepcopy(rng)
        order = self.row_order(rng, len(self.x))
        return mask_series(self.x[order], self.mask_rate, self.span, spans_rng)
