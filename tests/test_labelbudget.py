"""labelbudget: nested budgets, vocabulary/embedding reuse, the ELMo-style classifier, the trainer
that resets instead of recompiling, and the sweep summaries."""

import keras
import matplotlib
import numpy as np
import pandas as pd
import pytest

from ptft_keras import config, tokenizers
from ptft_keras.experiments import label_budget
from ptft_keras import models

matplotlib.use("Agg")

V, S = 40, 10


def toy_ids(n=128, seed=0):
    """Class 1 draws its words from the upper half of the vocabulary: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n).astype("int32")
    low = np.where(labels == 1, V // 2, 5)[:, None]
    ids = (low + rng.integers(0, V // 2 - 5, size=(n, S))).astype("int32")
    ids[:, 0], ids[:, -1] = 2, 3
    ids[: n // 4, -3:] = 0  # some padding
    ids[: n // 4, -4] = 3
    return ids, labels


def tiny_classifier():
    config.set_seed(0)
    encoder = models.LSTMBackbone(V, embedding_dim=8, hidden_dim=6, bidirectional=True)
    return encoder, label_budget.build_elmo_classifier(encoder)


# --- budgets --------------------------------------------------------------------------------------
def test_budget_sizes():
    assert label_budget.budget_sizes(4000, [0.01, 0.05, 0.25, 1.0]) == [40, 200, 1000, 4000]
    assert label_budget.budget_sizes(50, [0.01]) == [2]  # never fewer than 2
    with pytest.raises(ValueError, match="more than"):
        label_budget.budget_sizes(10, [1.5])


def test_budget_subsets_nested_stratified_reproducible():
    labels = np.array([1] * 70 + [0] * 30)
    subsets = label_budget.budget_subsets(labels, [3, 10, 40, 100], seed=5)
    assert [len(subsets[k]) for k in (3, 10, 40, 100)] == [3, 10, 40, 100]
    assert set(subsets[3]) <= set(subsets[10]) <= set(subsets[40]) <= set(subsets[100])
    for k, index in subsets.items():
        assert len(set(index.tolist())) == k
        positives = labels[index].sum()
        assert abs(positives - 0.7 * k) <= 1 and 0 < positives < k  # balance kept, both classes
    again = label_budget.budget_subsets(labels, [10], seed=5)[10]
    assert np.array_equal(again, subsets[10])
    assert not np.array_equal(label_budget.budget_subsets(labels, [10], seed=6)[10], subsets[10])


def test_budget_subsets_errors():
    with pytest.raises(ValueError, match="single class"):
        label_budget.budget_subsets(np.ones(10), [5])
    with pytest.raises(ValueError, match="does not fit"):
        label_budget.budget_subsets(np.array([0, 1, 0, 1]), [5])
    with pytest.raises(ValueError, match="does not fit"):
        label_budget.budget_subsets(np.array([0, 1, 0, 1]), [1])


def test_repeat_to():
    x, y = np.arange(6).reshape(3, 2), np.array([0, 1, 0])
    tx, ty = label_budget.repeat_to(x, y, 7)
    assert len(tx) == len(ty) == 9 and np.array_equal(tx[3:6], x)
    dx, dy = label_budget.repeat_to({"token_ids": x}, y, 2)
    assert dx["token_ids"] is x and dy is y  # already long enough: unchanged
    dx, _ = label_budget.repeat_to({"token_ids": x}, y, 4)
    assert dx["token_ids"].shape == (6, 2)


# --- vocabulary and embeddings --------------------------------------------------------------------
def test_compact_vocabulary_and_pack():
    # source vocabulary of 20: 0 pad, 1..3 "unused", 4 unk, 5 cls, 6 sep, 7 mask, 8+ regular
    lists = [[10, 11, 10, 12], [11, 10, 2, 19, 5], [13]]
    source_ids, lookup = label_budget.compact_vocabulary(lists, 20, [0, 4, 5, 6, 7], unk_id=4,
                                                   min_count=2, first_regular=8)
    assert source_ids.tolist() == [0, 4, 5, 6, 7, 10, 11]  # 12, 13, 19 rare; 2 is "unused"
    assert lookup[10] == 5 and lookup[11] == 6 and lookup[0] == 0
    assert lookup[12] == lookup[2] == lookup[19] == 1  # -> compact id of [UNK]
    packed = tokenizers.pack([lookup[ids] for ids in lists], 5, start_id=2, end_id=3)
    assert packed.dtype == np.int32 and packed.shape == (3, 5)
    assert packed[0].tolist() == [2, 5, 6, 5, 3]  # cut to 3 tokens; the end token survives
    assert packed[2].tolist() == [2, 1, 3, 0, 0]
    with pytest.raises(ValueError, match="unk_id"):
        label_budget.compact_vocabulary(lists, 20, [0, 5], unk_id=4)
    with pytest.raises(ValueError, match="Token ids"):
        label_budget.compact_vocabulary([[25]], 20, [0, 4], unk_id=4)


def test_compress_embeddings():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((50, 12)) @ np.diag(np.linspace(3, 0.1, 12))
    small, explained = label_budget.compress_embeddings(matrix, 4, skip=2, scale=0.05)
    assert small.shape == (50, 4) and small.dtype == np.float32
    assert np.isclose(small[2:].std(), 0.05, rtol=1e-4)
    assert 0.5 < explained < 1.0
    # With every dimension kept, PCA is a rotation: pairwise distances are preserved up to scale.
    full, explained_all = label_budget.compress_embeddings(matrix, 12, skip=2)
    assert np.isclose(explained_all, 1.0)
    d_in = np.linalg.norm(matrix[:, None] - matrix[None], axis=-1)
    d_out = np.linalg.norm(full[:, None] - full[None], axis=-1)
    ratio = d_out[d_in > 0] / d_in[d_in > 0]
    assert np.allclose(ratio, ratio[0], rtol=1e-4)
    with pytest.raises(ValueError, match="dim"):
        label_budget.compress_embeddings(matrix, 13)


def test_nearest_tokens():
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert label_budget.nearest_tokens(vectors, ["a", "b", "c", "d"], "a", top=2) == ["b", "c"]


# --- classifier and trainer -----------------------------------------------------------------------
def test_elmo_classifier_shapes_and_features_head_equivalence():
    encoder, model = tiny_classifier()
    ids, _ = toy_ids(16)
    logits = model({"token_ids": ids}, training=False)
    assert tuple(logits.shape) == (16, 2)
    features = label_budget.encoder_features(model, ids)
    assert features.shape == (16, 8 + 2 * 6)  # token embedding + both LSTM directions
    head = label_budget.build_head(features.shape[1])
    for name in ("pool_norm", "head"):
        head.get_layer(name).set_weights(model.get_layer(name).get_weights())
    np.testing.assert_allclose(head(features, training=False), logits, atol=1e-5)
    # Padding does not change the pooled vector: the mean is over real tokens only.
    longer = np.concatenate([ids, np.zeros((16, 5), "int32")], axis=1)
    np.testing.assert_allclose(label_budget.encoder_features(model, longer), features, atol=1e-5)


def test_budget_trainer_learns_resets_and_repeats():
    _, model = tiny_classifier()
    ids, labels = toy_ids(160)
    trainer = label_budget.BudgetTrainer(model, learning_rate=1e-2)
    start = [w.copy() for w in model.get_weights()]
    history = trainer.fit(ids[:120], labels[:120], (ids[120:], labels[120:]), max_epochs=8,
                          patience=2, min_epoch_size=64, seed=3)
    first = trainer.accuracy(ids[120:], labels[120:])
    assert first > 0.85 and len(history.epoch) >= 2
    trainer.reset()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))
    assert int(model.optimizer.iterations.numpy()) == 0
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-2)  # kept
    trainer.fit(ids[:120], labels[:120], (ids[120:], labels[120:]), max_epochs=8,
                patience=2, min_epoch_size=64, seed=3)
    assert trainer.accuracy(ids[120:], labels[120:]) == first  # same start + seed = same run
    with pytest.raises(ValueError, match="outside the label set"):
        trainer.fit(ids[:8], np.full(8, 2), (ids[8:16], labels[8:16]))


def test_budget_trainer_reset_restores_every_variable_dropout_state_included():
    """The bug the old ``set_weights`` reset had: a Dropout layer's seed-generator state is a
    variable outside ``get_weights()``, so runs after a reset drew other masks than a fresh model."""
    _, model = tiny_classifier()
    ids, labels = toy_ids(96)
    trainer = label_budget.BudgetTrainer(model, learning_rate=1e-2)
    start = {v.path: np.array(v.numpy()) for v in model.variables}
    seed_states = [path for path in start if "seed_generator" in path]
    assert seed_states, "the classifier should have a dropout seed generator to test"
    trainer.fit(ids[:64], labels[:64], (ids[64:], labels[64:]), max_epochs=2, patience=2,
                min_epoch_size=64, seed=0)
    moved = [p for p in seed_states if not np.array_equal(
        start[p], next(v for v in model.variables if v.path == p).numpy())]
    assert moved, "training should advance the dropout seed state"
    trainer.reset()
    for variable in model.variables:
        np.testing.assert_array_equal(variable.numpy(), start[variable.path], err_msg=variable.path)


# --- sweep and summaries --------------------------------------------------------------------------
def test_sweep_with_feature_arm_and_sizes():
    encoder, model = tiny_classifier()
    ids, labels = toy_ids(200)
    pool, val, test = (ids[:120], labels[:120]), (ids[120:160], labels[120:160]), \
        (ids[160:], labels[160:])
    features = [label_budget.encoder_features(model, x) for x in (pool[0], val[0], test[0])]
    arms = {
        "scratch": label_budget.Arm(label_budget.BudgetTrainer(model, learning_rate=1e-2)),
        "frozen": label_budget.Arm(label_budget.BudgetTrainer(label_budget.build_head(features[0].shape[1]), 1e-2),
                             None, *features, sizes=[12]),
    }
    results = label_budget.sweep(arms, pool, val, test, [12, 60], seeds=lambda n: [0, 1] if n < 50
                           else [0], max_epochs=3, patience=1, min_epoch_size=32)
    assert list(results.columns) == ["arm", "labels", "fraction", "seed", "accuracy", "epochs",
                                     "seconds"]
    assert len(results) == 2 * 2 + 1  # the frozen arm skips the 60-label budget
    assert results.accuracy.between(0, 1).all()
    table = label_budget.budget_table(results, reference="scratch")
    assert table.loc[12, "seeds"] == 2 and np.isnan(table.loc[60, "frozen"])
    ax = label_budget.plot_budget_curve(results)
    assert ax.get_xscale() == "log"


def test_paired_gap_and_table_by_hand():
    results = pd.DataFrame(dict(
        arm=["a", "b"] * 4,
        labels=[10, 10, 10, 10, 100, 100, 100, 100],
        seed=[0, 0, 1, 1, 0, 0, 1, 1],
        accuracy=[0.5, 0.6, 0.6, 0.6, 0.7, 0.75, 0.7, 0.8],
    ))
    assert label_budget.paired_gap(results, "b", "a", labels=[10]) == pytest.approx(0.05)
    by_budget = label_budget.paired_gap(results, "b", "a", by_budget=True)
    assert by_budget.loc[10] == pytest.approx(0.05) and by_budget.loc[100] == pytest.approx(0.075)
    assert label_budget.paired_gap(results, "b", "a") == pytest.approx(0.0625)  # budgets count once
    table = label_budget.budget_table(results, reference="a")
    assert list(table.columns) == ["seeds", "a", "b", "gap (b - a)"]
    assert table.loc[100, "b"] == pytest.approx(0.775)
