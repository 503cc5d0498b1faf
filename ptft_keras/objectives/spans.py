"""T5 span corruption: random spans replaced by sentinels, the decoder writes them back."""


import keras
import numpy as np
from keras import ops

from ptft_keras.objectives.base import Pretrainer


# --- T5 span corruption ---------------------------------------------------------------------------
def _random_segmentation(num_items, num_segments, rng):
    """Split ``num_items`` into ``num_segments`` positive lengths, every split equally likely:
    choose the num_segments - 1 cut points among the num_items - 1 gaps."""
    cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False) + 1)
    return np.diff(np.concatenate([[0], cuts, [num_items]])).astype(int)


def span_counts(length, noise_density=0.15, mean_span_length=3.0):
    """(number of noise tokens, number of noise spans) for a sequence of ``length`` tokens,
    as in the T5 paper: round(length x density) noise tokens (at least 1, at most length - 1)
    in round(noise / mean_span_length) spans (at least 1)."""
    num_noise = int(np.clip(np.round(length * noise_density), 1, length - 1))
    num_spans = max(1, int(np.round(num_noise / mean_span_length)))
    return num_noise, num_spans


def random_spans_noise_mask(length, rng, noise_density=0.15, mean_span_length=3.0):
    """Boolean (length,) mask of the tokens to drop, in contiguous spans.

    The sequence alternates non-noise and noise spans, starting with non-noise: both the noise
    and the non-noise tokens are split into ``num_spans`` random positive lengths.
    """
    num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    mask = np.zeros(length, bool)
    start = 0
    for keep, noise in zip(keep_lengths, noise_lengths):
        start += keep
        mask[start : start + noise] = True
        start += noise
    return mask


def apply_span_mask(tokens, noise_mask, sentinel_ids, eos_id=None):
    """Replace each noise span by one sentinel in the input; the target lists each sentinel
    followed by the span it hides (T5: "<X> span <Y> span ..."). EOS ends both if given.

    tokens: (L,) ids; noise_mask: (L,) bool. Returns (inputs, targets) as int32 arrays.
    """
    tokens = np.asarray(tokens)
    inputs, targets, span = [], [], -1
    for position, (token, noisy) in enumerate(zip(tokens, noise_mask)):
        if noisy:
            if position == 0 or not noise_mask[position - 1]:  # a span starts here
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"More spans than the {len(sentinel_ids)} sentinel ids given.")
                inputs.append(sentinel_ids[span])
                targets.append(sentinel_ids[span])
            targets.append(token)
        else:
            inputs.append(token)
    if eos_id is not None:
        inputs.append(eos_id)
        targets.append(eos_id)
    return np.asarray(inputs, "int32"), np.asarray(targets, "int32")


def span_corruption(tokens, sentinel_ids, seed=0, eos_id=None, noise_density=0.15,
                    mean_span_length=3.0):
    """T5 span corruption of one sequence, reproducible: the same seed gives the same spans.

    ``seed`` may also be a ``np.random.Generator``. Returns (inputs, targets) int32 arrays.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = random_spans_noise_mask(len(tokens), rng, noise_density, mean_span_length)
    return apply_span_mask(tokens, mask, sentinel_ids, eos_id)


def span_corruption_arrays(blocks, rng, sentinel_ids, eos_id, pad_id=0, noise_density=0.15,
                           mean_span_length=3.0):
    """One epoch of T5 inputs from equal-length token blocks (N, L).

    Equal lengths give equal noise and span counts, so every corrupted input has exactly
    L - noise + spans + 1 tokens and every target noise + spans + 1: no padding needed.
    Decoder inputs are the targets shifted right behind ``pad_id`` (T5's decoder start token).
    Returns ``(x, y, sample_weight)`` for ``Seq2SeqPretrainer`` (``T5Seq2SeqLM``'s format).
    """
    pairs = [
        span_corruption(block, sentinel_ids, rng, eos_id, noise_density, mean_span_length)
        for block in np.asarray(blocks)
    ]
    encoder = np.stack([inputs for inputs, _ in pairs])
    targets = np.stack([target for _, target in pairs])
    decoder = np.concatenate([np.full((len(targets), 1), pad_id, "int32"), targets[:, :-1]], 1)
    x = {
        "encoder_token_ids": encoder,
        "encoder_padding_mask": np.ones_like(encoder),
        "decoder_token_ids": decoder,
        "decoder_padding_mask": np.ones_like(decoder),
    }
    return x, targets, np.ones(targets.shape, "float32")


@keras.saving.register_keras_serializable(package="ptft_keras")
class Seq2SeqPretrainer(Pretrainer):
    """A keras-hub ``T5Backbone`` + the tied LM head on the decoder: logits (B, T, V).

    inputs: encoder_token_ids, encoder_padding_mask (B, S), decoder_token_ids,
    decoder_padding_mask (B, T). The same computation as keras-hub's ``T5Seq2SeqLM`` (which
    reuses this backbone for ``generate``), but a plain ``keras.Model``: keras-hub tasks
    override ``fit``/``evaluate`` and do not accept a ``keras.utils.PyDataset``.
    """

    def __init__(self, backbone, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        self._compile_on_construction(compile)

    def call(self, inputs, training=False):
        x = self.backbone(inputs, training=training)["decoder_sequence_output"]
        if self.backbone.tie_embedding_weights:
            # T5 scales by d_model^-0.5 before a tied output projection (keeps logits O(1)).
            x = x * ops.cast(self.backbone.hidden_dim**-0.5, x.dtype)
        return self.backbone.token_embedding(x, reverse=True)


