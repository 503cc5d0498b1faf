"""Scaling laws: power-law fits, transformer arithmetic checked against built models, a grid."""

import keras_hub
import numpy as np
import pytest
from scipy import optimize, stats

from ptft_keras import scaling
from ptft_keras.experiments import scaling_grid


# --- power-law fits -------------------------------------------------------------------------------
def test_fit_recovers_an_exact_power_law():
    x = np.logspace(3, 7, 6)
    fit = scaling.fit_power_law(x, 5.0 * x**-0.3)
    assert fit.alpha == pytest.approx(0.3, abs=1e-10)
    assert fit.a == pytest.approx(5.0, rel=1e-9)
    assert fit.c == 0.0 and fit.r2 == pytest.approx(1.0)
    assert fit.alpha_se < 1e-9
    np.testing.assert_allclose(scaling.predict(fit, [1e4, 1e8]), 5.0 * np.array([1e4, 1e8])**-0.3)


def test_noisy_fit_matches_scipy_and_its_interval_covers_the_truth():
    rng = np.random.default_rng(0)
    x = np.logspace(4, 8, 8)
    y = 3.0 * x**-0.25 * np.exp(rng.normal(0, 0.01, x.size))  # 1% multiplicative noise
    fit = scaling.fit_power_law(x, y)
    reference = stats.linregress(np.log(x), np.log(y))
    assert fit.alpha == pytest.approx(-reference.slope, rel=1e-9)
    assert fit.alpha_se == pytest.approx(reference.stderr, rel=1e-9)
    assert fit.r2 == pytest.approx(reference.rvalue**2, rel=1e-9)
    assert abs(fit.alpha - 0.25) < 0.01, fit
    low, high = fit.alpha_ci
    assert low < 0.25 < high and high - low < 0.03


def test_offset_fit_recovers_the_irreducible_loss():
    x = np.logspace(3, 8, 8)
    exact = scaling.fit_power_law(x, 2.0 * x**-0.4 + 1.5, with_offset=True)
    assert exact.alpha == pytest.approx(0.4, abs=1e-4)
    assert exact.c == pytest.approx(1.5, abs=1e-4)
    assert exact.a == pytest.approx(2.0, rel=1e-3)
    rng = np.random.default_rng(1)
    y = (2.0 * x**-0.4 + 1.5) * np.exp(rng.normal(0, 0.002, x.size))
    noisy = scaling.fit_power_law(x, y, with_offset=True)
    assert abs(noisy.alpha - 0.4) < 0.05 and abs(noisy.c - 1.5) < 0.02, noisy
    # Same optimum as scipy's curve_fit on log y started from the truth.
    popt, _ = optimize.curve_fit(lambda t, a, al, c: np.log(a * t**-al + c), x, np.log(y),
                                 p0=(2.0, 0.4, 1.5))
    np.testing.assert_allclose([noisy.a, noisy.alpha, noisy.c], popt, rtol=1e-3)
    # Without the offset the same curve needs a much smaller exponent: the offset matters.
    assert scaling.fit_power_law(x, y).alpha < 0.2


@pytest.mark.parametrize(
    "x, y, kwargs, message",
    [
        ([1, 2], [3, 2], {}, "at least 3 points"),
        ([1, 2, 3], [3, 2, 1], {"with_offset": True}, "at least 4 points"),
        ([1, 2, np.nan], [3, 2, 1], {}, r"NaN .* positions \[2\]"),
        ([1, 2, 3], [3, np.inf, 1], {}, "NaN or infinite"),
        ([1, 2, 3], [3, 0, 1], {}, r"positive .* positions \[1\]"),
        ([-1, 2, 3], [3, 2, 1], {}, "must be positive"),
        ([1, 2, 3], [3, 2], {}, "same length"),
        ([2, 2, 2], [3, 2, 1], {}, "All x values are equal"),
    ],
)
def test_fit_errors(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scaling.fit_power_law(x, y, **kwargs)


# --- arithmetic -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layers, heads, d, d_ff, vocab, context",
    [(2, 2, 16, 64, 101, 32), (3, 4, 32, 50, 257, 16), (1, 1, 8, 32, 50257, 8)],
)
def test_param_formula_matches_a_built_gpt2_backbone_exactly(layers, heads, d, d_ff, vocab,
                                                             context):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab, num_layers=layers, num_heads=heads, hidden_dim=d,
        intermediate_dim=d_ff, max_sequence_length=context,
    )
    counts = scaling.transformer_param_counts(layers, d, vocab, context, d_ff)
    assert counts["total"] == backbone.count_params()
    assert scaling.transformer_params(layers, d, vocab, context, d_ff) == backbone.count_params()
    non_embedding = sum(int(np.prod(w.shape)) for w in backbone.weights
                        if "embedding" not in w.path)
    assert counts["non_embedding"] == non_embedding
    untied = scaling.transformer_params(layers, d, vocab, context, d_ff, tied=False)
    assert untied == backbone.count_params() + vocab * d


def test_gpt3_175b_params_flops_and_memory():
    n = scaling.transformer_params(**scaling.GPT3_175B_CONFIG)
    assert abs(n - 175e9) / 175e9 < 0.01, n
    # 12 L d^2 is almost all of it.
    assert abs(12 * 96 * 12288**2 - n) / n < 0.01
    flops = scaling.training_flops(n, scaling.GPT3_175B["tokens"])
    # Brown et al. (2020), Table D.1: 3.14e23 training FLOPs for GPT-3 175B.
    assert abs(flops - 3.14e23) / 3.14e23 < 0.01, flops
    memory = scaling.training_memory(n, "bf16-mixed", "adam")
    assert memory["bytes_per_param"] == 16 and memory["total"] == 16 * n
    assert scaling.gpus_needed(memory["total"], 80) == 33  # 2.79e12 B / (80 * 2**30 B) = 32.5


def test_flops_and_memory_on_hand_checked_numbers():
    assert scaling.training_flops(1e6, 2e9) == 1.2e16
    # + attention: 6 * 2 layers * 128 ctx * 64 d = 98,304 FLOPs per token.
    assert scaling.training_flops(1e6, 10, n_layers=2, context=128, d_model=64) == 6e7 + 983_040
    m = scaling.training_memory(1e9, "fp32", "adam")
    assert (m["weights"], m["gradients"], m["master_weights"], m["optimizer_states"]) == (
        4e9, 4e9, 0.0, 8e9)
    assert m["total"] == 16e9
    mixed = scaling.training_memory(1e9, "bf16-mixed", "adam")
    assert (mixed["weights"], mixed["gradients"], mixed["master_weights"]) == (2e9, 2e9, 4e9)
    assert mixed["total"] == 16e9  # ZeRO's 2 + 2 + 12 bytes per parameter
    assert scaling.training_memory(1e9, "fp32", "sgd")["total"] == 8e9
    assert scaling.training_memory(1e9, "fp32", "momentum")["total"] == 12e9
    assert scaling.training_memory(1e9, "bf16", "adam")["total"] == 8e9
    assert scaling.gpus_needed(80 * 2**30, 80) == 1
    assert scaling.gpus_needed(80 * 2**30 + 1, 80) == 2
    assert scaling.training_days(86400 * 1e15, 10, 1e15, utilization=0.5) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="Unknown precision"):
        scaling.training_memory(1e9, "fp8")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        scaling.training_memory(1e9, "fp32", "lion")


# --- the measured grid ----------------------------------------------------------------------------
V = 40


def markov_stream(n, seed):
    """Tokens of a sparse Markov chain: each token has 3 likely successors, so a model can
    learn far below log(V)."""
    rng = np.random.default_rng(seed)
    successors = np.random.default_rng(123).integers(1, V, size=(V, 3))
    out = np.empty(n, "int32")
    out[0] = 1
    for t in range(1, n):
        out[t] = successors[out[t - 1], rng.integers(3)]
    return out


@pytest.fixture(scope="module")
def grid():
    train, val = markov_stream(20_000, 0), markov_stream(2_000, 1)
    frame = scaling_grid.run_scaling_grid(train, val, V, sizes=[8, 32], token_budgets=[1024, 8192],
                                     sequence_length=16, batch_size=8, learning_rate=1e-2)
    return frame, (train, val)


def test_grid_frame_shape_and_more_data_lowers_loss(grid):
    frame, _ = grid
    assert list(frame["size"]) == ["L2-d8", "L2-d8", "L2-d32", "L2-d32"]
    assert list(frame["tokens"]) == [1024, 8192] * 2
    assert np.isfinite(frame["val_loss"]).all() and np.isfinite(frame["train_loss"]).all()
    for _, runs in frame.groupby("size"):
        assert runs["val_loss"].iloc[1] < runs["val_loss"].iloc[0] - 0.1
    big = frame[frame["tokens"] == 8192].set_index("hidden_dim")["val_loss"]
    assert big[32] < big[8]  # the larger model learns more from the same 8192 tokens
    assert big[32] < np.log(V) - 1.0  # well below guessing: it learned the chain
    for _, row in frame.iterrows():
        counts = scaling.transformer_param_counts(2, row["hidden_dim"], V, 16)
        assert row["params"] == counts["total"]
        assert row["non_embedding_params"] == counts["non_embedding"]
        assert row["flops"] == 6 * counts["non_embedding"] * row["tokens"]


def test_a_checkpoint_equals_a_separate_shorter_run(grid):
    frame, (train, val) = grid
    alone = scaling_grid.run_scaling_grid(train, val, V, sizes=[8], token_budgets=[1024],
                                     sequence_length=16, batch_size=8, learning_rate=1e-2)
    assert alone["val_loss"].iloc[0] == pytest.approx(frame["val_loss"].iloc[0], abs=1e-6)


def test_grid_errors():
    ids = markov_stream(2_000, 0)
    with pytest.raises(ValueError, match="largest budget"):
        scaling_grid.run_scaling_grid(ids, ids, V, [8], [100_000], sequence_length=16, batch_size=8)
    with pytest.raises(ValueError, match="1-D array"):
        scaling_grid.run_scaling_grid(ids.reshape(100, 20), ids, V, [8], [256], sequence_length=16)
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        scaling_grid.run_scaling_grid(ids, ids, 10, [8], [256], sequence_length=16)
    with pytest.raises(ValueError, match="A size is a hidden dim"):
        scaling_grid.run_scaling_grid(ids, ids, V, [{"hidden_dim": 8, "learning_rate": 1.0}], [256],
                                 sequence_length=16, batch_size=8)
    with pytest.raises(ValueError, match="at least one batch"):
        scaling_grid.run_scaling_grid(ids, ids, V, [8], [10], sequence_length=16, batch_size=8)


def test_lstm_family_grid_orders_sizes_and_counts_params():
    train, val = markov_stream(20_000, 0), markov_stream(2_000, 1)
    frame = scaling_grid.run_scaling_grid(train, val, V, sizes=[4, 32], token_budgets=[1024, 8192],
                                     sequence_length=16, batch_size=8, learning_rate=1e-2,
                                     family="lstm")
    assert list(frame["size"]) == ["LSTM2-d4", "LSTM2-d4", "LSTM2-d32", "LSTM2-d32"]
    big = frame[frame["tokens"] == 8192].set_index("hidden_dim")
    assert big.loc[32, "val_loss"] < big.loc[4, "val_loss"]
    for h, row in big.iterrows():
        # 2 LSTMs of width h on inputs of width h (4 gates), a dense head; embeddings excluded
        lstm = 2 * 4 * (h * h + h * h + h)
        assert row["non_embedding_params"] == lstm + h * V + V
        assert row["params"] == row["non_embedding_params"] + V * h
    with pytest.raises(ValueError, match="family must be"):
        scaling_grid.run_scaling_grid(train, val, V, [4], [1024], sequence_length=16, batch_size=8,
                                 family="rnn")
