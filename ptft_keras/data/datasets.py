"""The one epoch-seeded ``PyDataset`` of the course.

Every stream of training batches that changes from epoch to epoch (dynamic masking, new sentence
pairs, spans, permutations, task sampling, domain balancing, captions, masked sensor series)
is an ``EpochDataset``: a function of ``(seed, epoch)``, so a run is repeatable batch for batch.
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
    """Batches ``(x, y, sample_weight)`` from arrays that ``make_epoch(rng)`` builds.

    ``make_epoch(rng) -> (x, y, sample_weight)``: each a (N, ...) array or a dict of them.
    ``dynamic=True`` calls it again every epoch with a new generator seeded ``[seed, epoch]``
    (RoBERTa-style dynamic masking, new pairs, spans or orders); ``dynamic=False`` builds the
    epoch-0 arrays once and reuses them (BERT-style static masking). Rows are shuffled with the
    same generator, so a given (seed, epoch) always gives the same batches.
    """

    def __init__(self, make_epoch, batch_size=32, dynamic=True, seed=0, shuffle=True, **kwargs):
        super().__init__(**kwargs)
        self.make_epoch = make_epoch
        self.batch_size = batch_size
        self.dynamic = dynamic
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self._prepare()

    def _prepare(self):
        rng = np.random.default_rng([self.seed, self.epoch if self.dynamic else 0])
        x, y, w = self.make_epoch(rng)
        n = _rows(x)
        if n == 0:
            raise ValueError("The objective produced no examples: the text is too short.")
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        self.arrays = tuple(_take(part, order) for part in (x, y, w))
        self.num_examples = n

    def __len__(self):
        return int(math.ceil(self.num_examples / self.batch_size))

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return tuple(_take(arrays, part) for arrays in self.arrays)

    def on_epoch_end(self):
        self.epoch += 1
        if self.dynamic:
            self._prepare()

