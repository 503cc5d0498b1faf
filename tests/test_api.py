"""The public five-call path (README / ``ptft_keras.__doc__``) and the string-in TextClassifier."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ptft_keras import config, finetuning, models, objectives, tokenizers

TINY = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32)
FILLERS = ["the", "movie", "film", "was", "plot", "actor", "story", "really", "quite", "and",
           "ending", "scene", "music", "long", "cast"]


def synthetic(n, seed):
    """Short sentences whose label is decided by one word: "great" (1) or "awful" (0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype("int32")
    texts = []
    for label in labels:
        words = list(rng.choice(FILLERS, size=rng.integers(3, 9)))
        words.insert(rng.integers(0, len(words) + 1), "great" if label else "awful")
        texts.append(" ".join(words))
    return texts, labels


def check_packed(ids, vocabulary_size):
    """[CLS] tokens [SEP] then only [PAD] (= 0), ids inside the vocabulary."""
    assert ids.dtype == np.int32
    assert (ids[:, 0] == tokenizers.CLS).all()
    assert 0 <= ids.min() and ids.max() < vocabulary_size
    for row in ids:
        sep = list(row).index(tokenizers.SEP)
        assert (row[sep + 1:] == tokenizers.PAD).all()
        assert (row[1:sep] >= len(tokenizers.SPECIAL_TOKENS)).all()  # real tokens, no padding


def test_readme_five_call_path_runs_as_written():
    config.set_seed(0)
    texts, labels = synthetic(200, seed=0)
    val_texts, val_labels = synthetic(64, seed=1)

    # --- the five calls, as in the README (tiny sizes) ----------------------------------------
    tok = tokenizers.WordPieceTokenizer.train(texts, vocabulary_size=200)
    ids = tok.encode(texts, sequence_length=16)  # int32 (N, 16), 0 = [PAD]
    val_ids = tok.encode(val_texts, sequence_length=16)
    backbone = models.TransformerBackbone(
        vocabulary_size=tok.vocabulary_size(), max_sequence_length=16, **TINY)
    mlm = objectives.MaskedLMPretrainer(backbone)  # compiled with the course's default
    masked = objectives.MLMDataset(ids, tok.vocabulary_size(), batch_size=16)
    fixed = objectives.MLMDataset(ids, tok.vocabulary_size(), batch_size=100, dynamic=False,
                                  shuffle=False, seed=1)
    before = np.log(objectives.perplexity(mlm, fixed))  # masked-token loss, eager: no tracing
    pretrain = mlm.fit(masked, epochs=1, verbose=0)
    clf = models.build_classifier(backbone, num_classes=2)  # token ids in, logits out
    result = finetuning.finetune(clf, (ids, labels), validation=(val_ids, val_labels),
                                 strategy="full", epochs=2)

    # --- tokenizer -------------------------------------------------------------------------------
    size = tok.vocabulary_size()
    assert 20 < size <= 200 and tuple(tok.vocabulary[:5]) == tokenizers.SPECIAL_TOKENS
    assert ids.shape == (200, 16) and val_ids.shape == (64, 16)
    check_packed(ids, size)
    check_packed(val_ids, size)
    assert "great" in tok.vocabulary and "awful" in tok.vocabulary
    assert tok.decode(ids[:3]) == texts[:3]  # plain lowercase words survive the round trip

    # --- pre-training ---------------------------------------------------------------------------
    assert isinstance(mlm.optimizer, keras.optimizers.AdamW)
    assert np.isclose(float(mlm.optimizer.learning_rate), 1e-3)
    losses = pretrain.history["loss"]
    assert len(losses) == 1 and np.isfinite(losses).all()
    assert "masked_accuracy" in pretrain.history
    after = np.log(objectives.perplexity(mlm, fixed))
    assert after < before - 0.05, (before, after)  # 13 AdamW steps lower the masked loss
    assert 3.0 < before < 7.0  # untrained: about ln(vocabulary size)

    # --- fine-tuning -----------------------------------------------------------------------------
    assert clf.get_layer(backbone.name) is backbone  # the pre-trained weights, not a copy
    assert tuple(clf({"token_ids": ids[:4]}).shape) == (4, 2)
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(result.history)
    assert len(result.history["val_loss"]) == result.epochs == 2
    assert np.isfinite(result.history["loss"]).all()
    assert np.isfinite(result.history["val_loss"]).all()
    assert result.seconds > 0 and result.strategy == "full"
    assert result.trainable == result.total == clf.count_params() > 0


@pytest.fixture(scope="module")
def text_model():
    config.set_seed(0)
    texts, labels = synthetic(120, seed=2)
    tok = tokenizers.WordPieceTokenizer.train(texts, vocabulary_size=120, min_frequency=1)
    backbone = models.TransformerBackbone(tok.vocabulary_size(), 16, **TINY)
    clf = models.build_classifier(backbone, num_classes=2)
    text_clf = models.TextClassifier(tokenizer=tok, classifier=clf, sequence_length=16)
    return tok, clf, text_clf, texts, labels


STRINGS = ["great film", "awful", "The GREAT actor, Café and 质量!", "a really long plot " * 8]


def test_text_classifier_predicts_from_strings_like_the_id_model(text_model):
    import tensorflow as tf

    tok, clf, text_clf, texts, labels = text_model
    logits = text_clf.predict(STRINGS, verbose=0)
    assert logits.shape == (4, 2) and logits.dtype == np.float32
    expected = keras.ops.convert_to_numpy(clf({"token_ids": tok.encode(STRINGS, 16)}))
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    # Inside tf.data (keras-hub's TF path) the ids are exactly those of tokenizers.encode.
    data = tf.data.Dataset.from_tensor_slices(STRINGS).batch(4).map(text_clf.preprocessor)
    ids = next(iter(data))["token_ids"].numpy()
    np.testing.assert_array_equal(ids, tok.encode(STRINGS, sequence_length=16))
    assert text_clf.sequence_length == 16
    # keras-hub convention: a direct call takes token ids; strings get a clear error.
    direct = text_clf(text_clf.preprocessor(STRINGS))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(direct), expected, atol=1e-6)
    with pytest.raises(ValueError, match="predict"):
        text_clf(tf.constant(STRINGS))
    # Compiled on construction (the course's classification defaults): trains on raw strings.
    assert isinstance(text_clf.optimizer, keras.optimizers.AdamW) and text_clf.loss.from_logits
    text_clf.run_eagerly = True  # a few tiny steps: quicker than tracing the train step
    history = text_clf.fit(texts, labels, batch_size=32, epochs=1, verbose=0).history
    text_clf.run_eagerly = False
    assert np.isfinite(history["loss"]).all() and "accuracy" in history


def test_text_classifier_refuses_a_mismatched_tokenizer_or_classifier(text_model):
    tok, clf, *_ = text_model
    small = models.build_classifier(models.TransformerBackbone(10, 16, **TINY), 2)
    with pytest.raises(ValueError, match="do not match"):
        models.TextClassifier(tokenizer=tok, classifier=small, sequence_length=16)
    with pytest.raises(ValueError, match="at least 3"):
        models.TextClassifier(tokenizer=tok, classifier=clf, sequence_length=2)
    with pytest.raises(TypeError, match="WordPieceTokenizer"):
        models.TextClassifier(tokenizer="vocab.txt", classifier=clf)
    # Default length: the backbone's max_sequence_length.
    assert models.TextClassifier(tokenizer=tok, classifier=clf).sequence_length == 16


def test_saved_models_reload_in_a_fresh_process(text_model, tmp_path):
    tok, _, text_clf, texts, _ = text_model
    text_clf.save(tmp_path / "text_clf.keras")
    # A pre-trainer compiled on construction, with a custom learning rate and trained a little:
    # the fresh process must restore its weights, compile settings and optimizer state.
    config.set_seed(0)
    ids = tok.encode(texts, sequence_length=16)
    mlm = objectives.MaskedLMPretrainer(
        models.TransformerBackbone(tok.vocabulary_size(), 16, **TINY))
    mlm.compile(learning_rate=5e-4)
    data = objectives.MLMDataset(ids, tok.vocabulary_size(), batch_size=60, shuffle=False)
    mlm.run_eagerly = True  # two tiny steps; not part of the saved compile config
    mlm.fit(data, epochs=1, verbose=0)
    batch = data[0][0]
    mlm.save(tmp_path / "mlm.keras")
    # Never trained: saved with an unbuilt optimizer, reloads without a warning.
    new = objectives.MaskedLMPretrainer(
        models.TransformerBackbone(tok.vocabulary_size(), 16, **TINY))
    new(batch)
    new.save(tmp_path / "new.keras")
    np.savez(tmp_path / "expected.npz", text=text_clf.predict(STRINGS, verbose=0),
             mlm=keras.ops.convert_to_numpy(mlm(batch)), ids=batch["token_ids"],
             pos=batch["mask_positions"])
    script = textwrap.dedent(f"""
        import warnings
        import numpy as np, keras
        from ptft_keras import models
        folder = {str(tmp_path)!r}
        d = np.load(folder + "/expected.npz")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text_clf = keras.saving.load_model(folder + "/text_clf.keras")
            mlm = keras.saving.load_model(folder + "/mlm.keras")
            new = keras.saving.load_model(folder + "/new.keras")
        messages = [str(w.message) for w in caught]
        assert not [m for m in messages if "compile" in m or "Skipping" in m], messages
        assert type(text_clf).__name__ == "TextClassifier", type(text_clf)
        assert text_clf.sequence_length == 16
        np.testing.assert_allclose(text_clf.predict({STRINGS!r}, verbose=0), d["text"],
                                   atol=1e-6)
        got = mlm({{"token_ids": d["ids"], "mask_positions": d["pos"]}})
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), d["mlm"], atol=1e-6)
        assert type(mlm).__name__ == "MaskedLMPretrainer"
        assert int(mlm.optimizer.iterations.numpy()) == 2 and not mlm.run_eagerly
        assert np.isclose(float(mlm.optimizer.learning_rate), 5e-4)
        assert mlm.get_compile_config()["weighted_metrics"][0]["config"]["name"] == \\
            "masked_accuracy"
        assert new.compiled and int(new.optimizer.iterations.numpy()) == 0
        print("RELOADED-OK")
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert "RELOADED-OK" in run.stdout, run.stderr[-3000:]
