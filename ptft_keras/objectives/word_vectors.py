"""Word-vector pre-training: CBOW with negative sampling (word2vec, Mikolov et al. 2013).

The cheapest pre-training that still learns meaning: predict a token from the mean of its
neighbours' vectors, against ``negatives`` noise tokens, with a logistic loss. There is no
softmax over the vocabulary and no deep network, so a 2-core CPU trains good vectors on ten
million tokens in about a minute, where masked-language modelling needs GPU-hours to leave its
unigram plateau (chapter 1 measures both). The vectors it trains are the backbone's own
``token_embedding``: afterwards the backbone is fine-tuned (or further pre-trained) as usual.

Data side (NumPy): ``cbow_arrays`` turns packed token ids into (context, candidates, labels)
examples; frequent tokens are subsampled (word2vec's ``t = 1e-4`` rule) and noise tokens are
drawn from the unigram distribution to the power 3/4. ``CBOWDataset`` redraws all of that every
epoch from ``(seed, epoch)``.

Model side: ``WordVectorPretrainer(backbone)`` reads the context through the backbone's
``token_embedding`` and scores candidates against a separate output embedding (word2vec's second
matrix, discarded after pre-training).
"""

import keras
import numpy as np
from keras import ops

from ptft_keras.data.datasets import EpochDataset
from ptft_keras.data.validation import check_ids_fit
from ptft_keras.objectives.base import Pretrainer
from ptft_keras.tokenizers import SPECIAL_TOKENS


def token_stream(token_ids, first_regular=len(SPECIAL_TOKENS)):
    """The regular tokens of packed sequences, concatenated row by row: int32 (T,).

    token_ids: int (N, S) as ``tokenizers.encode`` packs them; ids below ``first_regular``
    ([PAD], [UNK], [CLS], [SEP], [MASK]) are dropped, so windows run across row boundaries the
    way word2vec's run across sentences.
    """
    token_ids = np.asarray(token_ids)
    return token_ids[token_ids >= first_regular].astype("int32")


def cbow_arrays(stream, rng, vocabulary_size, window=5, negatives=5, subsample=1e-4,
                counts=None):
    """One epoch of CBOW examples from a token stream.

    stream: int (T,). Frequent tokens are dropped with word2vec's probability
    ``1 - sqrt(t / f) - t / f`` (``subsample`` = t; 0 keeps everything), then every kept
    position with ``window`` tokens on each side becomes one example:
    ``context`` int32 (n, 2 * window), ``candidates`` int32 (n, 1 + negatives) (the true centre
    token first, then noise tokens drawn from unigram^0.75), ``labels`` float32 (n, 1 + negatives)
    = [1, 0, ..., 0]. ``counts``: token frequencies (V,), computed from ``stream`` if None.
    """
    stream = np.asarray(stream)
    if counts is None:
        counts = np.bincount(stream, minlength=vocabulary_size)
    counts = np.asarray(counts, "float64")
    if subsample:
        freq = counts / max(counts.sum(), 1.0)
        ratio = subsample / np.maximum(freq, 1e-12)
        keep = np.minimum(1.0, np.sqrt(ratio) + ratio)
        stream = stream[rng.random(len(stream)) < keep[stream]]
    centres = np.arange(window, len(stream) - window)
    if len(centres) == 0:
        raise ValueError(
            f"CBOW needs more than {2 * window} tokens after subsampling, got {len(stream)}: "
            f"give it more text, a smaller window, or subsample=0."
        )
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    context = stream[centres[:, None] + offsets[None, :]]
    noise = counts ** 0.75
    cdf = np.cumsum(noise / noise.sum())
    drawn = np.searchsorted(cdf, rng.random((len(centres), negatives)), side="right")
    noise_ids = np.minimum(drawn, vocabulary_size - 1)
    candidates = np.concatenate([stream[centres][:, None], noise_ids], axis=1)
    labels = np.zeros(candidates.shape, "float32")
    labels[:, 0] = 1.0
    return {"context": context.astype("int32"), "candidates": candidates.astype("int32")}, labels


class CBOWDataset(EpochDataset):
    """CBOW batches for ``fit``: ({"context", "candidates"}, labels), new draws every epoch.

    token_ids: packed ids (N, S) or a flat stream (T,); ``window``, ``negatives`` and
    ``subsample`` as in ``cbow_arrays``. Big batches (the default 4096) keep the steps cheap.
    """

    def __init__(self, token_ids, vocabulary_size, window=5, negatives=5, subsample=1e-4,
                 batch_size=4096, seed=0, **kwargs):
        token_ids = np.asarray(token_ids)
        if token_ids.size == 0:
            raise ValueError("CBOWDataset got no tokens: the pre-training corpus is empty.")
        for name, value, low in (("window", window, 1), ("negatives", negatives, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        ids = check_ids_fit(token_ids.reshape(1, -1), vocabulary_size, name="CBOWDataset token ids")
        self.stream = token_stream(ids) if token_ids.ndim == 2 else ids.reshape(-1)
        self.vocabulary_size = int(vocabulary_size)
        self.counts = np.bincount(self.stream, minlength=self.vocabulary_size)
        self.window, self.negatives, self.subsample = int(window), int(negatives), subsample
        super().__init__(batch_size=batch_size, seed=seed, **kwargs)

    def make_epoch(self, rng):
        return cbow_arrays(self.stream, rng, self.vocabulary_size, self.window, self.negatives,
                           self.subsample, self.counts)


@keras.saving.register_keras_serializable(package="ptft_keras")
class WordVectorPretrainer(Pretrainer):
    """CBOW with negative sampling on a backbone's ``token_embedding``.

    inputs: ``context`` int (B, 2W) and ``candidates`` int (B, 1 + K).
    output: logits (B, 1 + K), score of each candidate given the mean context vector.
    compile=True: Adam (learning rate 1e-2: a shallow model with sparse updates takes a large
    step) and binary cross-entropy on the logits. Only the embedding rows of tokens in a batch
    change, so the rest of the backbone is untouched.
    """

    def __init__(self, backbone, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        embedding = backbone.token_embedding
        self.output_embedding = keras.layers.Embedding(
            embedding.input_dim, embedding.output_dim, embeddings_initializer="zeros",
            name="output_embedding")
        self._compile_on_construction(compile)

    def compile_defaults(self, learning_rate, weight_decay):
        return {
            "optimizer": keras.optimizers.Adam(learning_rate=learning_rate),
            "loss": keras.losses.BinaryCrossentropy(from_logits=True),
            "weighted_metrics": None,
        }

    def compile(self, learning_rate=1e-2, **kwargs):
        super().compile(learning_rate=learning_rate, **kwargs)

    @property
    def trainable_weights(self):
        # Only the two embedding tables take part in CBOW: the optimizer gets just them, so the
        # rest of the backbone has no optimizer slots and no "gradients do not exist" warning.
        if not self.trainable:
            return []
        return (self.backbone.token_embedding.trainable_weights
                + self.output_embedding.trainable_weights)

    @property
    def trainable_variables(self):
        return self.trainable_weights

    def call(self, inputs):
        context = ops.mean(self.backbone.token_embedding(inputs["context"]), axis=1)  # (B, D)
        candidates = self.output_embedding(inputs["candidates"])                    # (B, 1+K, D)
        return ops.einsum("bd,bkd->bk", context, candidates)                         # (B, 1+K)

