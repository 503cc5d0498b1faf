"""The one epoch-seeded ``PyDataset`` of the course.

Every stream of training batches that changes from epoch to epoch (dynamic masking, new sentence
pairs, spans, permutations, task sampling, domain balancing, captions, masked sensor series)
is an ``EpochDataset``: a function of ``(seed, epoch)``, so a run is repeatable batch for batch.
``MLMDataset``, ``TaskSampler``, ``DomainBalancedSampler``, ``CaptionedDigits`` and
``MaskedSeriesBatches`` are subclasses that only say how one epoch's arrays are made.
"""

import math

import keras
import numpy as np


# --- feeding any objective to fit -----------------------------------------------------------------
def _take(structure, index):
    """Rows ``index`` of an array or of every array in a dict."""
    if isinstance(structure, dict):
        return {key: value[index] for key, value in structure.items()}
    return structure[index]


def _rows(structure):
    first = next(iter(structure.values())) if isinstance(structure, dict) else structure
    return len(first)


class EpochDataset(keras.utils.PyDataset):
    """Batches ``(x, y[, sample_weight])`` from arrays that ``make_epoch(rng)`` builds.

    ``make_epoch(rng) -> (x, y, sample_weight)`` (or ``(x, y)``): each a (N, ...) array or a dict
    of them. Pass it as a function, or subclass and override the ``make_epoch(self, rng)``
    method. ``rng`` is ``np.random.default_rng([seed, epoch])``: ``dynamic=True`` builds new
    arrays every epoch (RoBERTa-style dynamic masking, new pairs, spans or orders);
    ``dynamic=False`` builds the epoch-0 arrays once and reuses them (BERT-style static masking).
    ``shuffle=True`` shuffles the rows with the same generator after ``make_epoch``; a subclass
    whose draws depend on row position sets ``shuffle_after = False`` and puts the rows in
    ``self.row_order(rng, n)`` first itself. ``drop_remainder=True`` drops a ragged last batch.
    So a given (seed, epoch) always gives the same batches.

    Epochs: ``on_epoch_end()`` moves to the next epoch when iterating by hand. Under ``fit``,
    ``evaluate`` and ``predict`` Keras calls ``on_epoch_begin()`` at the start of every epoch,
    and that moves on instead; the first ``fit`` epoch uses epoch 0, the batches visible before
    ``fit``, and a second ``fit`` continues with the next epoch.
    """

    shuffle_after = True

    def __init__(self, make_epoch=None, batch_size=32, dynamic=True, seed=0, shuffle=True,
                 drop_remainder=False, **kwargs):
        super().__init__(**kwargs)
        if make_epoch is not None:
            self.make_epoch = make_epoch
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.dynamic = dynamic
        self.seed = seed
        self.shuffle = shuffle
        self.drop_remainder = drop_remainder
        self.epoch = 0
        self._keras_epochs = False  # True once Keras calls on_epoch_begin
        self._ended_last = False  # the last call was a by-hand on_epoch_end
        self._prepare()

    def make_epoch(self, rng):
        """This epoch's ``(x, y[, sample_weight])`` arrays, drawn with ``rng`` only."""
        raise NotImplementedError(
            f"{type(self).__name__}: pass make_epoch=... or override make_epoch(self, rng)."
        )

    def row_order(self, rng, n):
        """A random order of ``n`` rows (``range(n)`` when ``shuffle=False``)."""
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def _prepare(self):
        rng = np.random.default_rng([self.seed, self.epoch if self.dynamic else 0])
        arrays = tuple(self.make_epoch(rng))
        n = _rows(arrays[0])
        if n == 0:
            raise ValueError(
                f"{type(self).__name__} produced no examples (for an objective on text: the "
                f"text is too short)."
            )
        if self.shuffle and self.shuffle_after:
            order = rng.permutation(n)
            arrays = tuple(_take(part, order) for part in arrays)
        self.arrays = arrays
        self.num_examples = n

    def _move_to(self, epoch):
        self.epoch = epoch
        if self.dynamic:
            self._prepare()

    def __len__(self):
        if self.drop_remainder:
            return max(self.num_examples // self.batch_size, 1)
        return math.ceil(self.num_examples / self.batch_size)

    def __getitem__(self, index):
        self._ended_last = False
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return tuple(_take(arrays, part) for arrays in self.arrays)

    def on_epoch_end(self):
        if not self._keras_epochs:  # iterating by hand
            self._move_to(self.epoch + 1)
            self._ended_last = True

    def on_epoch_begin(self):
        # Keras 3 calls on_epoch_begin at the start of every epoch of fit/evaluate/predict, but
        # calls on_epoch_end once *before* the first epoch as well (EpochIterator.reset, right
        # after peeking at a batch or two). So on_epoch_begin counts the epochs from its first
        # call on; that first call undoes the step of an on_epoch_end made just before it (the
        # reset), and the first epoch uses the batches that were there before fit.
        if self._keras_epochs:
            self._move_to(self.epoch + 1)
        else:
            self._keras_epochs = True
            if self._ended_last:
                self._move_to(self.epoch - 1)
