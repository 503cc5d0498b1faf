import numpy as np

from ptft_keras import config, models, objectives
from ptft_keras.tokenizers import CLS, MASK, PAD, SEP

V = 1000


def random_batch(rng, batch=400, length=64):
    ids = rng.integers(5, V, size=(batch, length))
    lengths = rng.integers(10, length, size=batch)
    ids[np.arange(length)[None, :] >= lengths[:, None]] = PAD
    ids[:, 0] = CLS
    ids[np.arange(batch), lengths - 1] = SEP
    return ids.astype("int32")


def test_masking_statistics_follow_bert():
    rng = np.random.default_rng(0)
    ids = random_batch(rng)
    out = objectives.mask_tokens(ids, np.random.default_rng(1), V, max_predictions=20)
    w = out["mask_weights"] > 0
    rows = np.repeat(np.arange(len(ids))[:, None], w.shape[1], 1)[w]
    pos = out["mask_positions"][w]
    # Only real tokens are ever chosen, never [CLS]/[SEP]/[PAD].
    assert not np.isin(ids[rows, pos], [PAD, CLS, SEP]).any()
    # Labels are the original tokens.
    assert np.array_equal(out["mask_ids"][w], ids[rows, pos])
    # ~15% of the selectable tokens are chosen.
    selectable = (~np.isin(ids, [PAD, CLS, SEP])).sum()
    assert abs(w.sum() / selectable - 0.15) < 0.01
    # Of the chosen: ~80% [MASK], ~10% random other token, ~10% unchanged.
    new = out["token_ids"][rows, pos]
    masked = np.mean(new == MASK)
    same = np.mean(new == ids[rows, pos])
    assert abs(masked - 0.8) < 0.03
    assert abs(same - 0.1) < 0.03
    assert abs(1 - masked - same - 0.1) < 0.03
    # Positions not chosen are untouched.
    untouched = out["token_ids"].copy()
    untouched[rows, pos] = ids[rows, pos]
    assert np.array_equal(untouched, ids)


def test_static_masks_repeat_dynamic_masks_change():
    ids = random_batch(np.random.default_rng(0), batch=64)
    static = objectives.MLMDataset(ids, V, batch_size=64, dynamic=False, shuffle=False)
    dynamic = objectives.MLMDataset(ids, V, batch_size=64, dynamic=True, shuffle=False)
    s0, d0 = static[0][0]["token_ids"].copy(), dynamic[0][0]["token_ids"].copy()
    static.on_epoch_end()
    dynamic.on_epoch_end()
    assert np.array_equal(static[0][0]["token_ids"], s0)
    assert not np.array_equal(dynamic[0][0]["token_ids"], d0)
    # Same seed, same epoch: same masks (reproducible runs).
    again = objectives.MLMDataset(ids, V, batch_size=64, dynamic=True, shuffle=False)
    assert np.array_equal(again[0][0]["token_ids"], d0)


def test_a_few_steps_reduce_masked_loss_and_perplexity_is_exp_loss():
    config.set_seed(0)
    rng = np.random.default_rng(0)
    # A corpus with structure: token t is always followed by t+1, so context predicts the mask.
    starts = rng.integers(5, 50, size=(256, 1))
    ids = (starts + np.arange(16)[None, :]).astype("int32")
    ids[:, 0], ids[:, -1] = CLS, SEP
    backbone = models.TransformerBackbone(
        100, 16, num_layers=1, hidden_dim=32, num_heads=2, intermediate_dim=64
    )
    model = objectives.compile_mlm(objectives.MaskedLMPretrainer(backbone), 5e-3)
    data = objectives.MLMDataset(ids, 100, batch_size=32, seed=0)
    before = objectives.evaluate_mlm(model, data)
    model.fit(data, epochs=10, verbose=0)
    after = objectives.evaluate_mlm(model, data)
    assert after["loss"] < 0.7 * before["loss"]
    assert after["masked_accuracy"] > before["masked_accuracy"]
    assert np.isclose(after["perplexity"], np.exp(after["loss"]))
    # Untrained model over a 100-token vocabulary: perplexity near the vocabulary size.
    assert 40 < before["perplexity"] < 250


def test_mlm_head_is_tied_to_the_token_embedding():
    backbone = models.TransformerBackbone(50, 8, num_layers=1, hidden_dim=16, num_heads=2,
                                             intermediate_dim=32)
    model = objectives.MaskedLMPretrainer(backbone)
    model({"token_ids": np.ones((1, 8), "int32"), "mask_positions": np.zeros((1, 2), "int32")})
    assert model.mlm_head.token_embedding is backbone.token_embedding
    tables = {id(w) for w in model.weights if tuple(w.shape) == (50, 16)}
    assert len(tables) == 1  # one embedding matrix, used for input and output
