import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptft_keras import config, finetuning, models, objectives, optimizers

V, S = 60, 12


def toy_ids(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n).astype("int32")
    # Each class draws its words from its own half of the vocabulary: an easy, learnable task.
    low = np.where(labels == 1, V // 2, 5)[:, None]
    ids = (low + rng.integers(0, V // 2 - 5, size=(n, S))).astype("int32")
    ids[:, 0], ids[:, -1] = 2, 3
    return ids, labels


def tiny_transformer():
    return models.TransformerBackbone(V, S, num_layers=2, hidden_dim=16, num_heads=2,
                                         intermediate_dim=32)


def test_warmup_linear_decay_shape():
    sched = optimizers.WarmupLinearDecay(1e-3, warmup_steps=10, total_steps=110)
    lr = [float(sched(step)) for step in (0, 5, 10, 60, 110, 200)]
    assert np.allclose(lr, [0, 5e-4, 1e-3, 5e-4, 0, 0], atol=1e-9)
    again = optimizers.WarmupLinearDecay.from_config(sched.get_config())
    assert float(again(37)) == float(sched(37))


def test_finetune_learns_and_restores_best_weights():
    config.set_seed(0)
    ids, y = toy_ids(256)
    backbone = tiny_transformer()
    model = models.build_classifier(backbone, 2, pooling="mean")
    result = finetuning.finetune(model, (ids, y), (ids[:64], y[:64]), backbone=backbone,
                                         epochs=6, learning_rate=3e-3, patience=2)
    assert result.seconds > 0
    best = min(result.history["val_loss"])
    loss = model.evaluate({"token_ids": ids[:64]}, y[:64], verbose=0)[0]
    assert np.isclose(loss, best, rtol=1e-4)  # early stopping restored the best epoch
    assert max(result.history["val_accuracy"]) > 0.8


def test_early_stopping_on_validation_accuracy_restores_the_most_accurate_epoch():
    config.set_seed(0)
    ids, y = toy_ids(128)
    model = models.build_classifier(tiny_transformer(), 2, pooling="mean")
    val = (ids[:32], y[:32])
    result = finetuning.finetune(model, (ids, y), val, epochs=5, learning_rate=3e-3, patience=1,
                                 monitor="val_accuracy")
    accuracy = model.evaluate({"token_ids": val[0]}, val[1], verbose=0, return_dict=True)
    assert np.isclose(accuracy["accuracy"], max(result.history["val_accuracy"]))
    with pytest.raises(ValueError, match="monitor='loss'"):
        finetuning.finetune(model, (ids, y), val, monitor="loss")


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 2, 1]), r"outside the label set"),
        (np.array([0.5, 1, 0, 1]), r"integer class ids"),
        (np.array(["pos", "neg", "pos", "neg"]), r"integer class ids"),
        (np.array([], dtype="int32"), r"empty"),
    ],
)
def test_bad_labels_are_refused_before_training(labels, message):
    ids, _ = toy_ids(4)
    backbone = tiny_transformer()
    model = models.build_classifier(backbone, 2)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(ValueError, match=message):
        finetuning.finetune(model, (ids[: len(labels)], labels), (ids, np.zeros(4, "int32")))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_length_mismatch_and_vocab_mismatch():
    ids, y = toy_ids(8)
    backbone = tiny_transformer()
    model = models.build_classifier(backbone, 2)
    with pytest.raises(ValueError, match="8 texts but 5 labels"):
        finetuning.finetune(model, (ids, y[:5]), (ids, y), backbone=backbone)
    too_big = ids.copy()
    too_big[0, 1] = V + 10
    with pytest.raises(ValueError, match="do not match"):
        finetuning.finetune(model, (too_big, y), (ids, y), backbone=backbone)


def test_strategies_set_trainable_counts():
    backbone = tiny_transformer()
    model = models.build_classifier(backbone, 2)
    head = 16 * 2 + 2
    finetuning.apply_strategy(backbone, "head")
    assert finetuning.count_params(model)[0] == head
    finetuning.apply_strategy(backbone, "full")
    trainable, total = finetuning.count_params(model)
    assert trainable == total
    finetuning.apply_strategy(backbone, "freeze_bottom", k=1)
    block = sum(int(np.prod(w.shape)) for w in backbone.transformer_layers[1].weights)
    assert finetuning.count_params(model)[0] == head + block
    with pytest.raises(ValueError, match="between 0 and 2"):
        finetuning.apply_strategy(backbone, "freeze_bottom", k=5)


def test_models_reload_in_a_fresh_process_with_identical_predictions(tmp_path):
    config.set_seed(0)
    ids, y = toy_ids(16)
    backbone = tiny_transformer()
    clf = models.build_classifier(backbone, 2, pooling="mean")
    clf.save(tmp_path / "clf.keras")
    lstm = models.build_classifier(models.LSTMBackbone(V, 8, 8), 3)
    lstm.save(tmp_path / "lstm.keras")
    mlm = objectives.MaskedLMPretrainer(tiny_transformer())
    batch = objectives.MLMDataset(ids, V, batch_size=16, shuffle=False)[0][0]
    mlm_out = mlm.predict(batch, verbose=0)
    mlm.save(tmp_path / "mlm.keras")
    texts = ["good film", "bad film", "很好", "很差"] * 4
    text_model = models.build_lstm_classifier(texts, sequence_length=8, split="character")
    text_model.save(tmp_path / "text.keras")
    np.savez(
        tmp_path / "expected.npz", ids=ids, clf=clf.predict({"token_ids": ids}, verbose=0),
        lstm=lstm.predict({"token_ids": ids}, verbose=0), mlm=mlm_out,
        mlm_ids=batch["token_ids"], mlm_pos=batch["mask_positions"],
        text=text_model.predict(tf.constant(texts), verbose=0),
    )
    script = textwrap.dedent(f"""
        import numpy as np, keras, tensorflow as tf
        from ptft_keras import models  # registers every ptft_keras class
        d = np.load({str(tmp_path / 'expected.npz')!r})
        load = lambda name: keras.saving.load_model({str(tmp_path)!r} + "/" + name)
        texts = ["good film", "bad film", "很好", "很差"] * 4
        got = {{
            "clf": load("clf.keras").predict({{"token_ids": d["ids"]}}, verbose=0),
            "lstm": load("lstm.keras").predict({{"token_ids": d["ids"]}}, verbose=0),
            "mlm": load("mlm.keras").predict({{"token_ids": d["mlm_ids"],
                                               "mask_positions": d["mlm_pos"]}}, verbose=0),
            "text": load("text.keras").predict(tf.constant(texts), verbose=0),
        }}
        for name, value in got.items():
            np.testing.assert_array_equal(value, d[name], err_msg=name)
        print("RELOADED-OK")
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert "RELOADED-OK" in run.stdout, run.stderr[-3000:]
