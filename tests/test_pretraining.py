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
    # 14 epochs of 8 steps: the loss plateaus near log(V) first, and when it breaks away depends
    # on the masks drawn (10 epochs left the ratio at 0.64 or 0.70 depending on the draws).
    model.fit(data, epochs=14, verbose=0)
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


def _tiny_pretrainer(**kwargs):
    backbone = models.TransformerBackbone(50, 8, num_layers=1, hidden_dim=16, num_heads=2,
                                          intermediate_dim=32)
    return objectives.MaskedLMPretrainer(backbone, **kwargs)


def test_pretrainer_compiles_itself_with_the_course_defaults():
    import keras

    model = _tiny_pretrainer()
    assert model.compiled
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)
    assert np.isclose(float(model.optimizer.weight_decay), 0.01)
    assert model.loss.from_logits and model.loss.reduction == "mean_with_sample_weight"
    # compile_mlm and the default compile agree, argument for argument.
    def settings(m):  # the compile config, less the optimizer's auto-numbered name
        config = m.get_compile_config()
        del config["optimizer"]["config"]["name"]
        return config

    default = settings(model)
    assert settings(objectives.compile_mlm(_tiny_pretrainer(compile=False))) == default
    assert default["weighted_metrics"][0]["config"]["name"] == "masked_accuracy"
    # Overrides: the auto optimizer's hyper-parameters, or any argument of keras' compile.
    model.compile(learning_rate=5e-3, weight_decay=0.0)
    assert np.isclose(float(model.optimizer.learning_rate), 5e-3)
    assert float(model.optimizer.weight_decay) == 0.0
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.loss.reduction == "mean_with_sample_weight"  # the other defaults stay
    assert not _tiny_pretrainer(compile=False).compiled
    renamed = objectives.compile_mlm(_tiny_pretrainer(), 2e-3, metric_name="accuracy")
    assert renamed.get_compile_config()["weighted_metrics"][0]["config"]["name"] == "accuracy"
    assert np.isclose(float(renamed.optimizer.learning_rate), 2e-3)


def test_pretrainer_reloads_with_its_compile_settings_and_optimizer_state(tmp_path):
    import warnings

    import keras

    config.set_seed(0)
    ids = np.random.default_rng(0).integers(5, 50, size=(32, 8)).astype("int32")
    ids[:, 0], ids[:, -1] = CLS, SEP
    model = _tiny_pretrainer()
    model.compile(learning_rate=2e-3)
    data = objectives.MLMDataset(ids, 50, batch_size=16, shuffle=False)
    model.run_eagerly = True  # two tiny steps: quicker than tracing
    model.fit(data, epochs=1, verbose=0)
    model.save(tmp_path / "mlm.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "mlm.keras")
    assert not [w for w in caught if "compile" in str(w.message) or "Skipping" in str(w.message)]
    assert isinstance(loaded, objectives.MaskedLMPretrainer)
    assert np.isclose(float(loaded.optimizer.learning_rate), 2e-3)
    assert int(loaded.optimizer.iterations.numpy()) == 2
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
    x = data[0][0]
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
