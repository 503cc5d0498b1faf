"""Cross-domain tools: gradient reversal (exact), DANN, balanced sampling, transfer matrix,
domain-adaptive continued pre-training."""

import math

import keras
import keras_hub
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from ptft_keras import domain as D, layers
from ptft_keras.models import TransformerBackbone

VOCAB, SEQ = 100, 8


def tiny_backbone():
    return TransformerBackbone(VOCAB, max_sequence_length=SEQ, num_layers=1, hidden_dim=16,
                               num_heads=2, intermediate_dim=32, dropout=0.0)


def tiny_bert():
    return keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=1, num_heads=2,
                                         hidden_dim=16, intermediate_dim=32,
                                         max_sequence_length=16, dropout=0.0)


def bert_inputs(ids):
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}


def token_ids(n, seed=0):
    return np.random.default_rng(seed).integers(5, VOCAB, size=(n, SEQ)).astype("int32")


# --- gradient reversal ---------------------------------------------------------------------------
@pytest.mark.parametrize("lambda_", [1.0, 0.3, 2.5])
def test_gradient_reversal_is_identity_forward_and_scales_the_gradient_by_minus_lambda(lambda_):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(4, 5)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(4, 5)).astype("float32"))
    layer = layers.GradientReversal(lambda_)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
        plain = tf.reduce_sum(tf.identity(x) * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())  # forward: exactly the input
    reversed_grad = tape.gradient(loss, x).numpy()
    plain_grad = tape.gradient(plain, x).numpy()
    np.testing.assert_allclose(reversed_grad, -lambda_ * plain_grad, rtol=0, atol=1e-7)
    assert not np.allclose(reversed_grad, plain_grad)


def test_gradient_reversal_reverses_what_reaches_the_layers_below_and_lambda_is_settable():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="below")
    top = keras.layers.Dense(1, name="above")
    grl = layers.GradientReversal(1.0, name="grl")
    with_grl = keras.Model(inputs, top(grl(hidden(inputs))))
    without = keras.Model(inputs, top(hidden(inputs)))
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")

    @tf.function  # also inside a traced function, as in fit
    def grads(model):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model(x) ** 2)
        return tape.gradient(loss, [hidden.kernel, top.kernel])

    for lambda_ in (1.0, 0.25):
        grl.lambda_ = lambda_  # a variable: the traced function sees the new value
        (below_r, above_r), (below_p, above_p) = grads(with_grl), grads(without)
        np.testing.assert_allclose(below_r.numpy(), -lambda_ * below_p.numpy(), atol=1e-7)
        np.testing.assert_allclose(above_r.numpy(), above_p.numpy(), atol=1e-7)  # above: untouched
    assert grl.lambda_ == 0.25 and not grl.trainable_weights


def test_dann_schedule_rises_from_zero_to_one():
    values = [D.dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert all(b > a for a, b in zip(values, values[1:]))
    assert D.dann_lambda(0.5, max_lambda=0.1) == pytest.approx(0.1 * (2 / (1 + math.exp(-5)) - 1))


# --- DANN ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dann_setup():
    keras.utils.set_random_seed(0)
    model = D.build_dann(tiny_bert(), num_classes=3, num_domains=2, domain_units=8, dropout=0.0)
    rng = np.random.default_rng(0)
    source = D.domain_arrays(bert_inputs(token_ids(30)), 0, rng.integers(0, 3, 30))
    target = D.domain_arrays(bert_inputs(token_ids(6, seed=1)), 1)  # unlabeled
    return model, source, target


def test_dann_masks_target_labels_and_trains_with_the_schedule(dann_setup):
    model, source, target = dann_setup
    assert set(model.output) == {"label", "domain"}
    np.testing.assert_array_equal(target[2]["label"], 0)
    np.testing.assert_array_equal(target[2]["domain"], 1)
    D.compile_dann(model, learning_rate=1e-3, run_eagerly=True)
    x, y, w = D.concat_arrays(source, target)
    pred = model(x)
    loss = float(model.compute_loss(x, y, pred, w))
    y_other = dict(y, label=np.where(w["label"] > 0, y["label"], 2))
    assert float(model.compute_loss(x, y_other, pred, w)) == loss  # target labels: unused
    sampler = D.DomainBalancedSampler({"source": source, "target": target}, batch_size=8)
    schedule = D.DANNSchedule()
    history = model.fit(sampler, epochs=2, verbose=0, callbacks=[schedule])
    total = 2 * len(sampler)
    assert schedule.total_steps == total
    assert model.get_layer("gradient_reversal").lambda_ == pytest.approx(
        D.dann_lambda((total - 1) / total), rel=1e-6
    )
    assert history.history["grl_lambda"][0] < history.history["grl_lambda"][1]
    assert np.isfinite(history.history["loss"]).all()


def test_dann_model_reloads_with_identical_outputs(dann_setup, tmp_path):
    model, source, _ = dann_setup
    model.get_layer("gradient_reversal").lambda_ = 0.42
    model.save(tmp_path / "dann.keras")
    reloaded = keras.saving.load_model(tmp_path / "dann.keras")
    before, after = model.predict(source[0], verbose=0), reloaded.predict(source[0], verbose=0)
    for key in ("label", "domain"):
        np.testing.assert_array_equal(before[key], after[key])
    assert reloaded.get_layer("gradient_reversal").lambda_ == pytest.approx(0.42)


def test_dann_builds_on_our_backbone():
    model = D.build_dann(tiny_backbone(), num_classes=2, num_domains=4)
    out = model.predict({"token_ids": token_ids(3)}, verbose=0)
    assert out["label"].shape == (3, 2) and out["domain"].shape == (3, 4)


# --- balanced sampling ---------------------------------------------------------------------------
def test_domain_balanced_sampler_gives_equal_counts_whatever_the_sizes():
    sizes = {"movie": 50, "tweet": 7, "news": 13}
    parts = {
        name: D.domain_arrays({"token_ids": np.arange(n)[:, None] + 1000 * i}, i)
        for i, (name, n) in enumerate(sizes.items())
    }
    sampler = D.DomainBalancedSampler(parts, batch_size=6, seed=0)
    assert len(sampler) == 25  # the largest domain (50 rows, 2 per batch) seen once
    seen = {i: set() for i in range(3)}
    for index in range(len(sampler)):
        x, y, w = sampler[index]
        np.testing.assert_array_equal(np.bincount(y["domain"], minlength=3), [2, 2, 2])
        np.testing.assert_array_equal(x["token_ids"][:, 0] // 1000, y["domain"])  # rows match
        for row, d in zip(x["token_ids"][:, 0], y["domain"]):
            seen[d].add(int(row) % 1000)
    assert [len(seen[i]) for i in range(3)] == [50, 7, 13]  # small domains cycled through
    with pytest.raises(ValueError, match="multiple"):
        D.DomainBalancedSampler(parts, batch_size=8)


# --- cross-domain matrix -------------------------------------------------------------------------
def test_cross_domain_matrix_and_drop():
    skill = {"movie": 0.9, "product": 0.8, "tweet": 0.7, "news": 0.6}

    def train_fn(source):
        return source

    def eval_fn(model, target):  # in-domain: the target's skill; cross-domain: 0.1 lower per hop
        return skill[target] - 0.1 * abs(list(skill).index(model) - list(skill).index(target))

    accuracy, drop = D.cross_domain_matrix(train_fn, eval_fn, list(skill))
    assert accuracy.index.name == "source" and accuracy.columns.name == "target"
    assert accuracy.loc["movie", "news"] == pytest.approx(0.3)
    assert drop.loc["movie", "news"] == pytest.approx(0.3)  # 0.6 in-domain - 0.3
    np.testing.assert_allclose(np.diag(drop.to_numpy()), 0.0)
    assert isinstance(drop, pd.DataFrame) and (drop.to_numpy() >= -1e-12).all()


# --- continued pre-training ----------------------------------------------------------------------
@pytest.mark.parametrize("make", [tiny_backbone, tiny_bert])
def test_continue_pretraining_takes_exactly_the_steps_and_changes_the_backbone(make):
    keras.utils.set_random_seed(0)
    backbone = make()
    before = [np.array(w.numpy()) for w in backbone.trainable_weights]
    texts = [f"target text {i}" for i in range(20)]

    def encoder(batch):
        return token_ids(len(batch), seed=len(batch))

    pretrainer, history = D.continue_pretraining(backbone, texts, encoder, steps=3, batch_size=8,
                                                 run_eagerly=True)
    assert int(pretrainer.optimizer.iterations) == 3  # one epoch: 20 texts / 8 = 3 batches
    assert pretrainer.backbone is backbone
    after = [np.array(w.numpy()) for w in backbone.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert np.isfinite(history.history["loss"]).all()
    # Again with the same MLM head (kept, and trained further) and a fresh optimizer; 5 steps
    # end in the middle of the second epoch.
    head = np.array(pretrainer.mlm_head.weights[0].numpy())
    again, _ = D.continue_pretraining(backbone, texts, encoder, steps=5, batch_size=8,
                                      pretrainer=pretrainer, run_eagerly=True)
    assert again is pretrainer and int(again.optimizer.iterations) == 5
    assert not np.array_equal(head, np.array(again.mlm_head.weights[0].numpy()))
    with pytest.raises(ValueError, match="another backbone"):
        D.continue_pretraining(make(), texts, encoder, steps=1, pretrainer=pretrainer)
