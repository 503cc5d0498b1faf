"""EpochDataset, the one epoch-seeded PyDataset, and every class built on it.

Each class only says how one epoch's arrays are made from ``np.random.default_rng([seed,
epoch])``; the epoch counter, batching and the Keras epoch hooks are EpochDataset's. So every one
must: repeat its batches for the same (seed, epoch), change them in a new epoch when dynamic,
keep them when static, have the right length, and feed ``fit`` epoch 0, 1, ... in order.
"""

import keras
import numpy as np
import pytest

from ptft_keras import domain as D
from ptft_keras import multitask as M
from ptft_keras.data.datasets import EpochDataset
from ptft_keras.data.sensors import MaskedSeriesBatches
from ptft_keras.models import clip
from ptft_keras.objectives.mlm import MLMDataset

TASKS = {
    "sentiment": {"type": "classification", "num_classes": 2},
    "domain": {"type": "classification", "num_classes": 4},
    "rating": {"type": "regression"},
}
RNG = np.random.default_rng(123)
IDS = RNG.integers(5, 50, (37, 10)).astype("int32")
IDS[:, 0], IDS[-3:, -3:] = 2, 0  # [CLS] first, some padding
IMAGES = RNG.random((45, 8, 8, 1)).astype("float32")
DIGITS = RNG.integers(0, 10, 45)
SERIES = RNG.normal(size=(21, 32, 2)).astype("float32")
TASK_DATA = {"sentiment": (IDS[:20], np.arange(20) % 2),
             "rating": (IDS[20:26], np.linspace(-1, 1, 6))}
PARTS = {name: D.domain_arrays({"token_ids": np.arange(n)[:, None] + 1000 * i}, i)
         for i, (name, n) in enumerate({"movie": 17, "tweet": 5, "news": 9}.items())}


def random_rows(rng):
    return {"a": rng.integers(0, 1000, (11, 3))}, rng.normal(size=11), np.ones(11)


# name -> (make(seed, **kwargs), expected len, supports dynamic=False)
MAKERS = {
    "EpochDataset": (lambda seed, **kw: EpochDataset(random_rows, 4, seed=seed, **kw), 3, True),
    "MLMDataset": (lambda seed, **kw: MLMDataset(IDS, 50, batch_size=16, seed=seed, **kw), 3,
                   True),
    "TaskSampler": (lambda seed: M.TaskSampler(TASK_DATA, TASKS, batch_size=4, temperature=2.0,
                                               seed=seed), 26 // 4, False),
    "DomainBalancedSampler": (lambda seed: D.DomainBalancedSampler(PARTS, batch_size=6,
                                                                   seed=seed), 9, False),
    "CaptionedDigits": (lambda seed: clip.CaptionedDigits(
        IMAGES, DIGITS, clip.CaptionTokenizer.from_templates(), batch_size=8, seed=seed),
        45 // 8, False),
    "MaskedSeriesBatches": (lambda seed: MaskedSeriesBatches(SERIES, batch_size=8, span=4,
                                                             seed=seed), 3, False),
}
NAMES = list(MAKERS)
STATIC = [name for name in NAMES if MAKERS[name][2]]


def arrays_of(batch):
    """A batch's arrays in a fixed order (dicts by key)."""
    if isinstance(batch, dict):
        return [a for key in sorted(batch) for a in arrays_of(batch[key])]
    if isinstance(batch, (tuple, list)):
        return [a for part in batch for a in arrays_of(part)]
    return [np.asarray(batch)]


def epoch_arrays(dataset):
    return [a for index in range(len(dataset)) for a in arrays_of(dataset[index])]


def same(first, second):
    return len(first) == len(second) and all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip(first, second)
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_class_is_an_epoch_dataset_with_the_base_hooks(name):
    dataset = MAKERS[name][0](0)
    assert isinstance(dataset, EpochDataset)
    for hook in ("__len__", "__getitem__", "on_epoch_end", "on_epoch_begin"):
        assert getattr(type(dataset), hook) is getattr(EpochDataset, hook), hook


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_and_epoch_give_the_same_batches(name):
    make = MAKERS[name][0]
    a, b = make(7), make(7)
    for _ in range(2):  # epochs 0 and 1
        assert same(epoch_arrays(a), epoch_arrays(b))
        a.on_epoch_end()
        b.on_epoch_end()
    assert a.epoch == b.epoch == 2
    assert not same(epoch_arrays(make(7)), epoch_arrays(make(8)))  # the seed matters


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_batches_change_with_the_epoch(name):
    dataset = MAKERS[name][0](0)
    first = epoch_arrays(dataset)
    dataset.on_epoch_end()
    assert not same(epoch_arrays(dataset), first)


@pytest.mark.parametrize("name", STATIC)
def test_static_batches_repeat_every_epoch(name):
    dataset = MAKERS[name][0](0, dynamic=False)
    first = epoch_arrays(dataset)
    for _ in range(2):
        dataset.on_epoch_end()
        assert same(epoch_arrays(dataset), first)
    assert dataset.epoch == 2


@pytest.mark.parametrize("name", NAMES)
def test_length_and_batch_sizes(name):
    make, steps, _ = MAKERS[name]
    dataset = make(0)
    assert len(dataset) == steps
    rows = [len(arrays_of(dataset[i])[0]) for i in range(len(dataset))]
    assert all(r == dataset.batch_size for r in rows[:-1]) and 0 < rows[-1] <= dataset.batch_size
    dataset.on_epoch_end()
    assert len(dataset) == steps  # every epoch has the same number of steps


def test_drop_remainder_keeps_one_batch_when_there_are_fewer_rows():
    tokenizer = clip.CaptionTokenizer.from_templates()
    assert len(clip.CaptionedDigits(IMAGES[:5], DIGITS[:5], tokenizer, batch_size=8)) == 1
    assert len(clip.CaptionedDigits(IMAGES, DIGITS, tokenizer, batch_size=8)[4][1]) == 8
    assert len(EpochDataset(random_rows, 4, drop_remainder=True)) == 2  # 11 rows: 4 + 4


def test_a_subclass_overrides_make_epoch_and_a_missing_one_is_a_clear_error():
    class Squares(EpochDataset):
        def make_epoch(self, rng):
            x = rng.normal(size=(6, 1))
            return x, x**2

    data = Squares(batch_size=4, seed=1)
    x, y = data[0]
    np.testing.assert_array_equal(y, x**2)
    assert len(data) == 2
    with pytest.raises(NotImplementedError, match="make_epoch"):
        EpochDataset(batch_size=4)
    with pytest.raises(ValueError, match="no examples"):
        EpochDataset(lambda rng: (np.zeros((0, 2)), np.zeros(0)))


def test_fit_trains_on_epoch_0_then_1_and_a_second_fit_continues():
    """Keras calls on_epoch_end before the first epoch too; epoch 0 must still be fit's first."""
    keras.utils.set_random_seed(0)
    data = MaskedSeriesBatches(SERIES, batch_size=8, span=4, seed=3)
    epoch0 = epoch_arrays(data)
    inputs = keras.Input(SERIES.shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(SERIES.shape[-1])(inputs))
    model.compile("adam", "mse")
    used = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: used.append(data.epoch))
    history = model.fit(data, epochs=2, verbose=0, callbacks=[record])
    assert np.isfinite(history.history["loss"]).all() and len(history.history["loss"]) == 2
    assert used == [0, 1] and data.epoch == 1
    model.fit(data, epochs=1, verbose=0, callbacks=[record])
    assert used == [0, 1, 2]  # the next epoch, none skipped
    fresh = MaskedSeriesBatches(SERIES, batch_size=8, span=4, seed=3)
    assert same(epoch_arrays(fresh), epoch0)  # the batches seen before fit are epoch 0's
