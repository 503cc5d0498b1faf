"""Chapter 2's from-scratch code agrees with Keras' built-ins (tolerances stated per check)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptft_keras import scratch as F

X = np.linspace(-6, 6, 241)
RNG = np.random.default_rng(0)


def np_(t):
    return keras.ops.convert_to_numpy(t).astype(float)


# --- 2.1 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, keras_fn", [
    ("sigmoid", keras.activations.sigmoid),
    ("tanh", keras.activations.tanh),
    ("relu", keras.activations.relu),
    ("gelu", lambda x: keras.activations.gelu(x, approximate=False)),
    ("gelu_tanh", lambda x: keras.activations.gelu(x, approximate=True)),
])
def test_activations_and_derivatives_match_keras(name, keras_fn):
    f, df = F.ACTIVATIONS[name]
    np.testing.assert_allclose(f(X), np_(keras_fn(X.astype("float32"))), atol=1e-6)
    x = tf.constant(X[X != 0])  # float64; ReLU has no derivative at 0
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = keras_fn(x)
    np.testing.assert_allclose(df(x.numpy()), tape.gradient(y, x).numpy(), atol=1e-8)


def test_sigmoid_and_softmax_are_stable():
    assert np.all(np.isfinite(F.sigmoid(np.array([-1000.0, 1000.0]))))
    z = np.array([[1000.0, 1001.0, 1002.0], [-3.0, 0.0, 2.0]])
    np.testing.assert_allclose(F.softmax(z), np_(keras.activations.softmax(z)), atol=1e-7)
    np.testing.assert_allclose(F.softmax(z).sum(-1), 1.0)
    assert np.isnan(F.naive_softmax(z)[0]).all()
    np.testing.assert_allclose(F.log_softmax(z), np.log(F.softmax(z)), atol=1e-12)


def test_tanh_is_zero_centred_sigmoid_is_not():
    x = RNG.standard_normal(100_000)
    assert abs(F.tanh(x).mean()) < 0.01 and F.sigmoid(x).mean() > 0.49


def test_losses_match_keras():
    y = RNG.integers(0, 2, size=(8, 5)).astype(float)
    z = RNG.standard_normal((8, 5)) * 3
    p = F.sigmoid(z)
    np.testing.assert_allclose(F.mse(y, z), np_(keras.losses.mean_squared_error(y, z)),
                               rtol=1e-6)
    np.testing.assert_allclose(F.binary_crossentropy(y, p),
                               np_(keras.losses.binary_crossentropy(y, p)), rtol=1e-5)
    np.testing.assert_allclose(F.binary_crossentropy_from_logits(y, z),
                               np_(keras.losses.binary_crossentropy(y, z, from_logits=True)),
                               rtol=1e-6)
    labels = RNG.integers(0, 5, size=8)
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(F.categorical_crossentropy(onehot, F.softmax(z)),
                               np_(keras.losses.categorical_crossentropy(onehot, F.softmax(z))),
                               rtol=1e-5)
    np.testing.assert_allclose(
        F.categorical_crossentropy_from_logits(onehot, z),
        np_(keras.losses.categorical_crossentropy(onehot, z, from_logits=True)), rtol=1e-6)
    sparse = np_(keras.losses.sparse_categorical_crossentropy(labels, z, from_logits=True))
    np.testing.assert_allclose(F.sparse_categorical_crossentropy(labels, z), sparse, rtol=1e-6)
    np.testing.assert_allclose(F.sparse_categorical_crossentropy(labels, F.softmax(z),
                                                                 from_logits=False),
                               sparse, rtol=1e-5)


def test_hand_derived_gradients_match_gradient_tape():
    X_ = RNG.standard_normal((32, 4))
    w, b = RNG.standard_normal(4), 0.3
    for grads_fn, y, loss_fn in (
        (F.linear_mse_grads, RNG.standard_normal(32),
         lambda y, out: tf.reduce_mean((out - y) ** 2)),
        (F.logistic_bce_grads, RNG.integers(0, 2, 32).astype(float),
         lambda y, out: tf.reduce_mean(
             keras.losses.binary_crossentropy(y[:, None], out[:, None], from_logits=True))),
    ):
        wt, bt = tf.Variable(w), tf.Variable(np.float64(b))
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.linalg.matvec(X_, wt) + bt)
        dw, db = tape.gradient(loss, [wt, bt])
        my_loss, my_dw, my_db = grads_fn(X_, y, w, b)
        np.testing.assert_allclose(my_loss, loss.numpy(), rtol=1e-10)
        np.testing.assert_allclose(my_dw, dw.numpy(), rtol=1e-10)
        np.testing.assert_allclose(my_db, db.numpy(), rtol=1e-10)
    labels = RNG.integers(0, 3, 32)
    W = tf.Variable(RNG.standard_normal((4, 3)))
    bb = tf.Variable(np.zeros(3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, X_ @ W + bb, from_logits=True))
    dW, dbb = tape.gradient(loss, [W, bb])
    my_loss, my_dW, my_db = F.softmax_regression_grads(X_, labels, W.numpy(), bb.numpy())
    np.testing.assert_allclose([my_loss], [loss.numpy()], rtol=1e-10)
    np.testing.assert_allclose(my_dW, dW.numpy(), atol=1e-12)
    np.testing.assert_allclose(my_db, dbb.numpy(), atol=1e-12)


# --- 2.2 ----------------------------------------------------------------------------------------
def test_tokenize_vocab_stream():
    assert F.word_tokenize("It's 1851, Ishmael!") == ["it's", "1851", ",", "ishmael", "!"]
    vocab = F.build_vocab([["b", "a", "b"], ["c"]], max_size=5)
    assert vocab == ["<pad>", "<unk>", "<eos>", "b", "a"]
    np.testing.assert_array_equal(F.to_stream([["b", "zz"], ["a"]], vocab), [3, 1, 2, 4, 2])
    x, y = F.lm_windows(np.arange(10), 3)
    np.testing.assert_array_equal(x, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(y, x + 1)


def test_ngram_counts_and_smoothing():
    ids = [3, 4, 3, 4, 3, 5]
    lm = F.NGramLM(2, vocab_size=6, k=1.0).fit(ids)
    # history 3 occurs 3 times (followed by 4, 4, 5): P(4|3) = (2 + 1) / (3 + 6)
    assert lm.prob([3], 4) == pytest.approx(3 / 9)
    assert sum(lm.prob([3], w) for w in range(6)) == pytest.approx(1.0)
    assert sum(lm.prob([0], w) for w in range(6)) == pytest.approx(1.0)  # unseen history
    lp = lm.log_probs([4, 3], context=[3])
    np.testing.assert_allclose(lp, np.log([lm.prob([3], 4), lm.prob([4], 3)]))
    # An untrained (all-zero counts) add-k model is uniform: perplexity = vocabulary size.
    assert F.NGramLM(3, vocab_size=6, k=0.5).perplexity([1, 2, 3]) == pytest.approx(6.0)
    uni = F.NGramLM(1, vocab_size=6, k=0.0).fit(ids)
    assert uni.prob((), 3) == pytest.approx(3 / 6)


def test_masked_lm_loss_counts_masked_positions_only():
    from ptft_keras.objectives import mask_tokens

    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, size=(4, 20))
    ids[:, 0], ids[:, -1], ids[2, 12:] = 2, 3, 0
    masked = mask_tokens(ids, rng, vocabulary_size=50)
    logits = rng.standard_normal(masked["mask_ids"].shape + (50,))
    mine = F.masked_lm_loss(logits, masked["mask_ids"], masked["mask_weights"])
    keras_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight")(
            masked["mask_ids"], logits, sample_weight=masked["mask_weights"])
    assert mine == pytest.approx(float(keras_loss), rel=1e-5)
    assert masked["mask_weights"].sum() < masked["mask_weights"].size  # padding slots exist
    every_slot = F.sparse_categorical_crossentropy(masked["mask_ids"], logits).mean()
    assert abs(every_slot - mine) > 1e-3


def test_sentence_pairs_nsp_and_sop():
    docs = [[f"d{d}s{i}" for i in range(6)] for d in range(4)]
    rng = np.random.default_rng(0)
    for task in ("nsp", "sop"):
        pairs = F.sentence_pairs(docs, rng, task=task)
        assert len(pairs) == 4 * 5 and 5 <= sum(p[2] for p in pairs) <= 15
        for a, b, label in pairs:
            da, ia = a[1], int(a[3])
            db, ib = b[1], int(b[3])
            if label == 1:
                assert (da, ib) == (db, ia + 1)
            elif task == "sop":
                assert (da, ia) == (db, ib + 1)
            else:
                assert da != db
    tokens, segments = F.pack_pair([7, 8, 9], [10, 11], length=8)
    np.testing.assert_array_equal(tokens, [2, 7, 8, 9, 3, 10, 11, 3])
    np.testing.assert_array_equal(segments, [0, 0, 0, 0, 0, 1, 1, 1])
    tokens, _ = F.pack_pair(list(range(10, 20)), [5], length=8)
    assert len(tokens) == 8 and tokens[-1] == 3


def test_lms_are_causal():
    keras.utils.set_random_seed(0)
    ids = np.random.default_rng(0).integers(3, 40, size=(2, 10)).astype("int32")
    changed = ids.copy()
    changed[:, 6:] = 5
    for model in (F.lstm_lm(40, 8, 8), F.transformer_lm(40, 10, hidden_dim=8, num_heads=2,
                                                         num_layers=1, intermediate_dim=16)):
        a, b = np_(model(ids)), np_(model(changed))
        assert a.shape == (2, 10, 40)
        np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)
        assert not np.allclose(a[:, 6:], b[:, 6:])


# --- 2.3 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(F.UPDATES))
def test_optimizers_match_keras_step_by_step(name):
    lr = 0.05 if name in ("adagrad", "rmsprop", "adam", "adamw") else 0.002
    optimizer = F.keras_optimizer(name, lr)
    theta = keras.Variable(np.array([-1.2, 1.5], "float32"))
    mine, state = np.array([-1.2, 1.5]), {}
    for _ in range(25):
        start = theta.numpy().astype(float)
        grad = F.rosenbrock_grad(start)
        optimizer.apply([grad.astype("float32")], [theta])
        # one step of the from-scratch update, from Keras' own current point
        expected, state = F.UPDATES[name](start, grad, state, lr=lr)
        np.testing.assert_allclose(theta.numpy(), expected, rtol=2e-6, atol=1e-7)
        mine, _ = expected, None
    assert F.rosenbrock(mine) < F.rosenbrock(np.array([-1.2, 1.5]))


def test_adam_forms_differ_only_in_epsilon():
    g = np.array([1e-6, 0.3, -2.0])
    keras_form, _ = F.adam_update(np.zeros(3), g, {}, lr=0.1, form="keras")
    paper, _ = F.adam_update(np.zeros(3), g, {}, lr=0.1, form="paper")
    assert not np.allclose(keras_form, paper)  # a gradient near eps feels the difference
    for form in ("keras", "paper"):
        step, _ = F.adam_update(np.zeros(3), g, {}, lr=0.1, epsilon=0.0, form=form)
        np.testing.assert_allclose(step, -0.1 * np.sign(g))  # first step: lr * sign(g)
    # The book's formula (m over the product of both corrections, no v) is not Adam:
    m = 0.1 * g
    book = -0.1 * m / ((1 - 0.9) * (1 - 0.999))
    assert np.abs(book).max() > 100 * np.abs(keras_form).max()


def test_schedules_match_keras():
    from ptft_keras.optimizers import WarmupLinearDecay

    steps = np.arange(0, 400)
    S = keras.optimizers.schedules
    checks = [
        (F.exponential_decay(steps, 0.1, 0.5, 100), S.ExponentialDecay(0.1, 100, 0.5)),
        (F.step_decay(steps, 0.1, 0.5, 100), S.ExponentialDecay(0.1, 100, 0.5, staircase=True)),
        (F.cosine_decay(steps, 0.1, 300, alpha=0.1), S.CosineDecay(0.1, 300, alpha=0.1)),
        (F.warmup_cosine(steps, 0.1, 50, 300),
         S.CosineDecay(0.0, 300, warmup_target=0.1, warmup_steps=50)),
        (F.warmup_linear_decay(steps, 0.1, 40, 400), WarmupLinearDecay(0.1, 40, 400)),
    ]
    for mine, schedule in checks:
        theirs = np.array([float(schedule(int(s))) for s in steps])
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(F.constant_lr(steps, 0.1), 0.1)


def test_initializer_scales_match_keras():
    for name, init in (("glorot", keras.initializers.GlorotNormal(seed=1)),
                       ("he", keras.initializers.HeNormal(seed=1))):
        sample = np_(init((300, 200)))
        assert np.std(sample) == pytest.approx(F.init_std(name, 300, 200), rel=0.03)


def test_activation_statistics_show_the_initialization_effects():
    he, _ = F.activation_stats("he", "relu", depth=20)
    tiny, _ = F.activation_stats("normal(0.01)", "tanh", depth=20)
    _, saturated = F.activation_stats("normal(1.0)", "tanh", depth=20)
    glorot, _ = F.activation_stats("glorot", "tanh", depth=20)
    assert 0.3 < he[-1] < 3.0  # He keeps ReLU activations at scale
    assert tiny[-1] < 1e-10  # too small: the signal vanishes
    assert saturated[-1] > 0.5  # too large: tanh saturates, gradients vanish
    assert glorot[-1] > 0.05


def test_bag_of_words():
    out = F.bag_of_words([["a", "b", "a"], ["zz"]], ["<pad>", "a", "b"], binary=False)
    np.testing.assert_array_equal(out, [[0, 2, 1], [0, 0, 0]])
