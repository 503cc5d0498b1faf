"""Multi-task models: named outputs, masked losses, loss weighting, staged training, sampling.

Checks are exact where they can be: a masked label must change nothing at all, an absent task
must give exactly zero gradient, sampling frequencies must match p_i ∝ n_i^(1/T).
"""

import math

import keras
import keras_hub
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from ptft_keras import multitask as M
from ptft_keras.experiments import single_vs_multi
from ptft_keras.models import TransformerBackbone

VOCAB, SEQ = 100, 8
TASKS = {
    "sentiment": {"type": "classification", "num_classes": 2},
    "domain": {"type": "classification", "num_classes": 4},
    "rating": {"type": "regression"},
}


def tiny_backbone():
    return TransformerBackbone(VOCAB, max_sequence_length=SEQ, num_layers=1, hidden_dim=16,
                               num_heads=2, intermediate_dim=32, dropout=0.0)


def tiny_bert():
    return keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=1, num_heads=2,
                                         hidden_dim=16, intermediate_dim=32,
                                         max_sequence_length=16, dropout=0.0)


def token_ids(n, seed=0):
    return np.random.default_rng(seed).integers(5, VOCAB, size=(n, SEQ)).astype("int32")


def frame_with_gaps(n=24, seed=0):
    """Sentiment labels on the first rows only, ratings on the last rows, no domain column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "text": [f"text {i}" for i in range(n)],
        "sentiment": rng.integers(0, 2, n).astype(float),
        "rating": rng.normal(size=n),
    })
    frame.loc[n // 2:, "sentiment"] = np.nan
    frame.loc[: n // 4, "rating"] = np.nan
    return frame


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    model = M.build_multitask_model(backbone, TASKS, dropout=0.0)
    data = M.task_arrays(frame_with_gaps(), TASKS, token_ids(24))
    return backbone, model, data


def snapshot(model):
    return {w.path: np.array(w.numpy()) for w in model.weights}


def changed(before, after):
    return {p for p in after if not np.array_equal(before[p], after[p])}


def loss_and_grads(model, x, y, w):
    """The compiled multi-task loss and its gradients, outside ``fit`` (deterministic model)."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=False)
        loss = model.compute_loss(x, y, y_pred, w)
    grads = tape.gradient(loss, model.trainable_weights)
    # Embedding gradients come as IndexedSlices: make every gradient a dense array.
    return float(loss), {v.path: None if g is None else tf.convert_to_tensor(g).numpy()
                         for v, g in zip(model.trainable_weights, grads)}


# --- model and data ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [tiny_backbone, tiny_bert])
def test_named_outputs_on_our_and_keras_hub_backbones(make):
    model = M.build_multitask_model(make(), TASKS)
    ids = token_ids(3)
    x = {"token_ids": ids}
    if "segment_ids" in model.input:
        x.update(segment_ids=np.zeros_like(ids), padding_mask=np.ones_like(ids))
    out = model.predict(x, verbose=0)
    assert set(out) == set(TASKS)
    assert out["sentiment"].shape == (3, 2)
    assert out["domain"].shape == (3, 4)
    assert out["rating"].shape == (3, 1)


def test_task_arrays_masks_missing_labels_without_inventing_them():
    frame = pd.DataFrame({
        "text": ["a", "b", "c", "d"],
        "sentiment": [1, -1, 0, np.nan],
        "drug": ["positive", None, "neutral", "negative"],
        "rating": [0.5, np.nan, -2.0, 1.0],
    })
    tasks = {
        "sentiment": {"type": "classification", "num_classes": 2},
        "drug": {"type": "classification", "classes": ["negative", "neutral", "positive"]},
        "rating": {"type": "regression"},
        "domain": {"type": "classification", "num_classes": 4},  # no column: all missing
    }
    x, y, w = M.task_arrays(frame, tasks, lambda texts: token_ids(len(texts)))
    assert x["token_ids"].shape == (4, SEQ)
    np.testing.assert_array_equal(w["sentiment"], [1, 0, 1, 0])
    np.testing.assert_array_equal(y["sentiment"][[0, 2]], [1, 0])
    np.testing.assert_array_equal(w["drug"], [1, 0, 1, 1])
    np.testing.assert_array_equal(y["drug"][[0, 2, 3]], [2, 1, 0])
    np.testing.assert_array_equal(w["rating"], [1, 0, 1, 1])
    assert not np.isnan(y["rating"]).any()  # a NaN placeholder would poison the loss (NaN*0)
    np.testing.assert_array_equal(w["domain"], 0)
    assert M.labelled_counts(w) == {"sentiment": 2, "drug": 3, "rating": 3, "domain": 0}
    with pytest.raises(ValueError, match="not class ids"):
        M.task_arrays(frame.assign(sentiment=[1, 2, 0, 1]), tasks, token_ids(4))
    with pytest.raises(ValueError, match="'classes'"):  # strings need a class list
        M.task_arrays(frame, {"drug": {"type": "classification", "num_classes": 3}}, token_ids(4))


def test_masked_label_values_change_nothing(model_and_data):
    _, model, (x, y, w) = model_and_data
    M.compile_multitask(model, TASKS, run_eagerly=True)
    loss, grads = loss_and_grads(model, x, y, w)
    scrambled = {k: v.copy() for k, v in y.items()}
    scrambled["sentiment"][w["sentiment"] == 0] = 1
    scrambled["rating"][w["rating"] == 0] = 1e4
    scrambled["domain"][:] = 3
    loss2, grads2 = loss_and_grads(model, x, scrambled, w)
    assert loss2 == loss
    for path in grads:
        np.testing.assert_array_equal(grads[path], grads2[path])
    # ...while changing a LABELLED value does change the loss (the check can fail).
    scrambled["sentiment"][0] = 1 - scrambled["sentiment"][0]
    assert loss_and_grads(model, x, scrambled, w)[0] != loss


def test_all_masked_task_gives_zero_loss_and_zero_head_gradient(model_and_data):
    _, model, (x, y, w) = model_and_data
    assert M.labelled_counts(w)["domain"] == 0
    pred = model(x)
    assert float(M.task_loss(TASKS["domain"])(y["domain"], pred["domain"], w["domain"])) == 0.0
    for trainer in (model, M.MultiTaskTrainer(model, TASKS, weighting="uncertainty")):
        if trainer is model:
            M.compile_multitask(model, TASKS, run_eagerly=True)
        else:
            M.compile_trainer(trainer, run_eagerly=True)
        _, grads = loss_and_grads(trainer, x, y, w)
        domain_head = [p for p in grads if p.startswith("domain/")]
        assert domain_head
        for path in domain_head:
            assert grads[path] is None or not np.any(grads[path])
        assert np.any(grads["sentiment/kernel"]) and np.any(grads["rating/kernel"])
        if trainer is not model:  # nor any gradient to the absent task's log-variance
            assert grads["uncertainty_weighting/log_variances"][1] == 0.0


def ops_value(tensor):
    return keras.ops.convert_to_numpy(tensor)


# --- loss weighting ------------------------------------------------------------------------------
def test_uncertainty_weights_are_trainable_and_move_the_right_way(model_and_data):
    _, model, (x, y, w) = model_and_data
    y = dict(y, rating=y["rating"] * 30.0)  # rating loss >> 1, sentiment loss ~0.7 < 1
    trainer = M.MultiTaskTrainer(model, TASKS, weighting="uncertainty")
    log_vars = trainer.uncertainty.log_variances
    assert any(v is log_vars for v in trainer.trainable_weights)
    M.compile_trainer(trainer, learning_rate=0.05, run_eagerly=True)
    trainer.fit(x, y, sample_weight=w, epochs=1, batch_size=8, verbose=0)
    s = ops_value(log_vars)
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L: s goes up when L > 1 (down-weight), down when L < 1.
    assert s[2] > 0.05 and s[0] < -0.05
    assert s[1] == 0.0  # domain has no labels: its log-variance never moves
    weights = trainer.effective_weights()
    assert weights["rating"] < 1.0 < weights["sentiment"]


def test_kendall_form_uses_half_factors():
    layer = M.UncertaintyWeighting(["regression", "classification"], form="kendall")
    layer.log_variances.assign([math.log(2.0), 0.0])
    total = float(layer(keras.ops.convert_to_tensor([4.0, 3.0]), keras.ops.ones(2)))
    expected = (0.5 * 4.0 / 2.0 + 0.5 * math.log(2.0)) + (3.0 + 0.0)
    assert total == pytest.approx(expected, rel=1e-6)


def test_dwa_weights_follow_the_loss_ratios():
    # Task 0's loss did not fall (ratio 1), task 1's halved (ratio 0.5): task 0 needs more weight.
    weights = M.dwa_weights([1.0, 0.5], [1.0, 1.0], temperature=2.0)
    expected = 2 * np.exp([0.5, 0.25]) / np.exp([0.5, 0.25]).sum()
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    assert weights[0] > 1.0 > weights[1] and weights.sum() == pytest.approx(2.0)
    np.testing.assert_allclose(M.dwa_weights([1.0, 0.5], [1.0, 1.0], 1e6), [1.0, 1.0], atol=1e-6)


def test_dwa_callback_sets_the_trainer_weights(model_and_data):
    _, model, (x, y, w) = model_and_data
    trainer = M.MultiTaskTrainer(model, TASKS)
    callback = M.DynamicWeightAveraging(temperature=2.0)
    callback.set_model(trainer)
    callback.on_train_begin()
    constructed = [  # rating stalls, sentiment keeps falling, domain falls a little
        {"sentiment_loss": 1.0, "domain_loss": 1.0, "rating_loss": 1.0},
        {"sentiment_loss": 0.5, "domain_loss": 0.9, "rating_loss": 1.0},
    ]
    for epoch, logs in enumerate(constructed):
        callback.on_epoch_begin(epoch)
        np.testing.assert_array_equal(ops_value(trainer.task_weights), 1.0)
        callback.on_epoch_end(epoch, logs)
    callback.on_epoch_begin(2)
    weights = ops_value(trainer.task_weights)
    assert weights[2] > weights[1] > weights[0]  # order of the ratios 1.0 > 0.9 > 0.5
    assert weights.sum() == pytest.approx(3.0, rel=1e-6)
    # And inside fit: three epochs, the third one re-weighted.
    M.compile_trainer(trainer, run_eagerly=True)
    callback = M.DynamicWeightAveraging()
    history = trainer.fit(x, y, sample_weight=w, epochs=3, batch_size=12, verbose=0,
                          callbacks=[callback])
    assert {"sentiment_loss", "rating_loss", "loss"} <= set(history.history)
    assert len(callback.log) == 3 and callback.log[0] == callback.log[1]
    assert callback.log[2] != callback.log[1]
    np.testing.assert_allclose(ops_value(trainer.task_weights), list(callback.log[2].values()),
                               rtol=1e-6)


# --- staged training -----------------------------------------------------------------------------
class Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.taken = []

    def on_train_begin(self, logs=None):
        self.taken.append(snapshot(self.model))

    def on_train_end(self, logs=None):
        self.taken.append(snapshot(self.model))


def test_staged_training_trains_heads_in_both_stages_and_freezes_the_backbone_in_stage_two():
    keras.utils.set_random_seed(1)
    backbone = tiny_backbone()
    model = M.build_multitask_model(backbone, TASKS, dropout=0.0)
    frame = frame_with_gaps().assign(domain=np.arange(24) % 4)
    x, y, w = M.task_arrays(frame, TASKS, token_ids(24))
    snaps = Snapshots()
    histories = M.staged_training(model, backbone, TASKS, x, y, w, epochs=(1, 1),
                                  batch_size=12, callbacks=[snaps], run_eagerly=True)
    assert set(histories) == {"shared", "heads"}
    backbone_paths = {v.path for v in backbone.weights}
    head_paths = {v.path for layer in M.head_layers(model, TASKS) for v in layer.weights}
    assert len(head_paths) == 6  # kernel + bias of three heads
    stage1 = changed(snaps.taken[0], snaps.taken[1])
    stage2 = changed(snaps.taken[2], snaps.taken[3])
    assert head_paths <= stage1 and head_paths <= stage2
    assert backbone_paths & stage1  # shared layers learn in stage 1
    assert not backbone_paths & stage2  # ...and are frozen in stage 2
    assert backbone.trainable  # restored afterwards


# --- task sampling -------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 2.0, float("inf")])
def test_temperature_sampling_matches_n_to_the_one_over_t(temperature):
    sizes = [400, 100, 25]
    expected = np.array(sizes, float) ** (0.0 if math.isinf(temperature) else 1 / temperature)
    expected /= expected.sum()
    np.testing.assert_allclose(M.sampling_probabilities(sizes, temperature), expected)
    data = {t: (np.full((n, 2), i, "int32"), np.full(n, i % 2)) for i, (t, n) in
            enumerate(zip(["sentiment", "domain", "rating"], sizes))}
    steps = 4000
    sampler = M.TaskSampler(data, TASKS, batch_size=2, temperature=temperature,
                            steps_per_epoch=steps, seed=3)
    counts = np.array([sampler.plan_tasks.count(t) for t in data])
    # Binomial standard error sqrt(p(1-p)/steps) <= 0.008: 0.03 is > 3.5 standard errors.
    np.testing.assert_allclose(counts / steps, expected, atol=0.03)
    for index in range(0, steps, 397):  # each batch: one task's rows, the others weighted 0
        x, y, w = sampler[index]
        task = sampler.plan_tasks[index]
        task_id = list(data).index(task)
        assert (x["token_ids"] == task_id).all()
        assert {t for t in w if w[t].any()} == {task}
        assert set(y) == set(TASKS)


def test_task_sampler_is_reproducible_and_feeds_fit(model_and_data):
    _, model, _ = model_and_data
    data = {"sentiment": (token_ids(20), np.arange(20) % 2),
            "rating": (token_ids(6, seed=1), np.linspace(-1, 1, 6))}
    a = M.TaskSampler(data, TASKS, batch_size=4, temperature=2.0, seed=7)
    b = M.TaskSampler(data, TASKS, batch_size=4, temperature=2.0, seed=7)
    assert a.plan_tasks == b.plan_tasks
    first_plan = list(a.plan_tasks)
    np.testing.assert_array_equal(b[2][0]["token_ids"], a.data[a.plan_tasks[2]][0]["token_ids"][
        a.plan_rows[2]])
    M.compile_multitask(model, TASKS)  # traced train function (the default path), not eager
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(list(a.plan_tasks))

    history = model.fit(a, epochs=2, verbose=0, callbacks=[Record()])
    assert np.isfinite(history.history["loss"]).all()
    assert seen[0] == first_plan  # the plan shown before fit is the one epoch 0 used
    assert a.epoch == 1 and seen[1] != seen[0]  # and every epoch gets a fresh one


def test_task_sampler_needs_one_input_layout_for_all_tasks():
    longer = np.ones((3, SEQ + 1), "int32")
    with pytest.raises(ValueError, match="same input keys and shapes"):
        M.TaskSampler({"sentiment": (token_ids(4), np.arange(4) % 2),
                       "rating": (longer, np.zeros(3))}, TASKS, batch_size=2)
    with pytest.raises(ValueError, match="same input keys and shapes"):
        M.TaskSampler({"sentiment": (token_ids(4), np.arange(4) % 2),
                       "rating": ({"ids": token_ids(3)}, np.zeros(3))}, TASKS, batch_size=2)


# --- saving and comparison -----------------------------------------------------------------------
def test_multi_output_model_and_trainer_reload_with_identical_outputs(model_and_data, tmp_path):
    _, model, (x, _, _) = model_and_data
    path = tmp_path / "multitask.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    before, after = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    assert set(after) == set(TASKS)
    for task in TASKS:
        np.testing.assert_array_equal(before[task], after[task])
    trainer = M.MultiTaskTrainer(model, TASKS, weighting="uncertainty")
    trainer.uncertainty.log_variances.assign([0.1, 0.2, -0.3])
    trainer.task_weights.assign([1.0, 0.5, 2.0])
    trainer.save(tmp_path / "trainer.keras")
    again = keras.saving.load_model(tmp_path / "trainer.keras")
    assert again.effective_weights() == pytest.approx(trainer.effective_weights())
    # Same weights; the wrapper's own predict graph may round differently in the last bit.
    np.testing.assert_allclose(again.predict(x, verbose=0)["rating"], before["rating"], atol=1e-6)


def test_compare_single_vs_multi_returns_one_row_per_task():
    tasks = {"sentiment": TASKS["sentiment"], "rating": TASKS["rating"]}
    train = M.task_arrays(frame_with_gaps(32), tasks, token_ids(32))
    test = M.task_arrays(frame_with_gaps(16, seed=1), tasks, token_ids(16, seed=1))
    table = single_vs_multi.compare_single_vs_multi(tiny_backbone, tasks, train, test, epochs=1,
                                      batch_size=16, run_eagerly=True)
    assert list(table["task"]) == ["sentiment", "rating"]
    assert list(table["metric"]) == ["accuracy", "mae"]
    row = table.set_index("task").loc["sentiment"]
    assert 0.0 <= row["single_task"] <= 1.0 and 0.0 <= row["multi_task"] <= 1.0
    np.testing.assert_allclose(table["difference"], table["multi_task"] - table["single_task"])
