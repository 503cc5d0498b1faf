"""CLIP-style contrastive model on the sklearn digits: loss checked by hand, captions, tokenizer,
zero-shot above chance after brief training, save/load, bad inputs."""

import numpy as np
import pytest
import keras

from ptft_keras.models import clip


def unit_rows(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_cross_entropy(logits, targets):
    """Mean over rows of -sum(targets * log_softmax(logits)), float64."""
    logits = logits.astype("float64")
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    return float(-(targets * log_p).sum(1).mean())


def loss(a, b, temperature, labels=None):
    return float(keras.ops.convert_to_numpy(clip.clip_loss(a, b, temperature, labels)))


# --- loss ----------------------------------------------------------------------------------------
def test_clip_loss_equals_symmetric_cross_entropy_computed_by_hand_and_by_keras():
    img, txt, t = unit_rows(6, 4, 0), unit_rows(6, 4, 1), 0.3
    logits = img @ txt.T / t
    eye = np.eye(6)
    by_hand = (numpy_cross_entropy(logits, eye) + numpy_cross_entropy(logits.T, eye)) / 2
    ids = np.arange(6)
    by_keras = np.mean([
        keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(
            ids, logits_, from_logits=True)).mean() for logits_ in (logits, logits.T)
    ])
    assert loss(img, txt, t) == pytest.approx(by_hand, rel=1e-5)
    assert by_hand == pytest.approx(by_keras, rel=1e-5)
    # Not symmetric in its two halves on its own: the check above needs both directions.
    assert numpy_cross_entropy(logits, eye) != pytest.approx(numpy_cross_entropy(logits.T, eye))


def test_clip_loss_is_symmetric_in_image_and_text():
    img, txt = unit_rows(8, 5, 2), unit_rows(8, 5, 3)
    assert loss(img, txt, 0.1) == pytest.approx(loss(txt, img, 0.1), rel=1e-6)
    labels = np.array([0, 1, 0, 2, 1, 2, 0, 3])
    assert loss(img, txt, 0.1, labels) == pytest.approx(loss(txt, img, 0.1, labels), rel=1e-6)


def test_clip_loss_is_near_zero_for_aligned_pairs_and_large_for_shuffled_ones():
    basis = np.eye(8, dtype="float32")  # orthonormal: each pair similar 1, others 0
    aligned = loss(basis, basis, 0.05)
    shuffled = loss(basis, basis[np.roll(np.arange(8), 1)], 0.05)
    assert aligned < 1e-6  # exp(-1/0.05) * 7 ~ 1.4e-8
    assert shuffled > 10.0  # the true partner scores 0 while a wrong one scores 1/0.05 = 20
    # A higher temperature softens the logits: aligned pairs no longer reach zero loss.
    assert loss(basis, basis, 1.0) > 0.5


def test_same_class_targets_match_a_hand_computation_and_reduce_to_clip_for_distinct_labels():
    img, txt, t = unit_rows(6, 4, 4), unit_rows(6, 4, 5), 0.5
    labels = np.array([3, 1, 3, 3, 0, 1])
    same = (labels[:, None] == labels[None, :]).astype("float64")
    targets = same / same.sum(1, keepdims=True)
    logits = img @ txt.T / t
    by_hand = (numpy_cross_entropy(logits, targets) + numpy_cross_entropy(logits.T, targets)) / 2
    assert loss(img, txt, t, labels) == pytest.approx(by_hand, rel=1e-5)
    assert loss(img, txt, t, labels) != pytest.approx(loss(img, txt, t), rel=1e-3)
    assert loss(img, txt, t, np.arange(6)) == pytest.approx(loss(img, txt, t), rel=1e-6)


def test_clip_loss_rejects_unequal_batch_sizes():
    with pytest.raises(ValueError, match="5 image and 4 text"):
        clip.clip_loss(unit_rows(5, 3, 0), unit_rows(4, 3, 1), 0.1)


# --- captions and tokenizer ----------------------------------------------------------------------
def test_captions_are_seeded_name_the_right_digit_and_mix_words_and_numerals():
    labels = np.arange(10).repeat(20)
    captions = clip.digit_captions(labels, seed=3)
    assert captions == clip.digit_captions(labels, seed=3)
    assert captions != clip.digit_captions(labels, seed=4)
    tokenizer = clip.CaptionTokenizer.from_templates()
    for label, caption in zip(labels, captions):
        words = set(tokenizer.split(caption))
        named = {k for k in range(10) if {clip.DIGIT_WORDS[k], str(k)} & words}
        assert named == {label}, caption
    numerals = sum(any(w.isdigit() for w in c.split()) for c in captions)
    assert 0.2 * len(captions) < numerals < 0.8 * len(captions)
    # Several phrasings per digit (8 templates x 10 digits = 80 possible captions).
    assert len(set(captions)) > 60
    assert min(len(set(captions[k * 20:(k + 1) * 20])) for k in range(10)) >= 5


def test_zero_shot_templates_are_held_out_of_training():
    assert not set(clip.ZERO_SHOT_TEMPLATES) & set(clip.CAPTION_TEMPLATES)
    train = {clip.fill_template(t, k) for t in clip.CAPTION_TEMPLATES for k in range(10)}
    prompts = {p for per_class in clip.digit_prompts() for p in per_class}
    assert not prompts & train


def test_tokenizer_pads_maps_unknown_words_and_covers_the_caption_vocabulary():
    tokenizer = clip.CaptionTokenizer.from_templates(length=6)
    ids = tokenizer(["The digit 7", "a photo of a seven"])
    assert ids.shape == (2, 6) and ids.dtype == np.int32
    assert tokenizer.vocabulary[ids[0, 2]] == "7" and list(ids[0, 3:]) == [0, 0, 0]
    assert ids[1, 1] == 1  # "photo" is in no training template: [UNK]
    all_captions = [clip.fill_template(t, k) for t in clip.CAPTION_TEMPLATES for k in range(10)]
    assert (tokenizer(all_captions) != 1).all()
    with pytest.raises(ValueError, match="list of texts"):
        tokenizer("a seven")


# --- model ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    train, test = clip.digit_split(test_size=0.25, seed=0)
    model, tokenizer, history = clip.train_clip(*train, epochs=4, batch_size=64, seed=0)
    return model, tokenizer, history, train, test


def test_brief_training_lowers_the_loss_and_zero_shot_beats_chance_by_far(trained):
    model, tokenizer, history, train, (x_te, y_te) = trained
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.5
    predictions = clip.zero_shot_classify(model, tokenizer, x_te)  # held-out templates
    accuracy = np.mean(predictions == y_te)
    assert accuracy > 0.5, accuracy  # chance is 0.10
    assert len(set(predictions)) == 10  # not one class for everything


def test_untrained_model_is_near_chance(trained):
    _, tokenizer, _, _, (x_te, y_te) = trained
    untrained = clip.build_clip(tokenizer.vocabulary_size, seed=1)
    accuracy = np.mean(clip.zero_shot_classify(untrained, tokenizer, x_te) == y_te)
    assert accuracy < 0.3, accuracy  # so the trained model's score comes from training


def test_linear_probe_matches_sklearn_on_pixels_and_embeddings_are_unit_length(trained):
    model, _, _, (x_tr, y_tr), (x_te, y_te) = trained
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(max_iter=2000, random_state=0).fit(x_tr.reshape(len(x_tr), -1),
                                                                      y_tr)
    expected = reference.score(x_te.reshape(len(x_te), -1), y_te)
    assert clip.linear_probe(x_tr, y_tr, x_te, y_te) == pytest.approx(expected)
    emb = clip.embed_images(model, x_te[:20])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_temperature_is_learnable_and_clipped_like_clip():
    model = clip.build_clip(20, seed=0)
    assert float(model.temperature) == pytest.approx(0.07, rel=1e-5)
    assert model.log_logit_scale in model.trainable_weights
    model.log_logit_scale.assign(10.0)  # scale e^10 would be > 100: clipped to 100
    assert float(model.temperature) == pytest.approx(0.01, rel=1e-5)


def test_save_and_load_give_identical_outputs(trained, tmp_path):
    model, tokenizer, _, _, (x_te, _) = trained
    inputs = {"images": x_te[:16], "token_ids": tokenizer(clip.digit_captions(np.arange(16) % 10))}
    path = tmp_path / "clip.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, clip.DigitCLIP)
    before, after = model(inputs), loaded(inputs)
    for key in ("image_embeddings", "text_embeddings"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(before[key]),
                                      keras.ops.convert_to_numpy(after[key]))
    assert float(loaded.temperature) == pytest.approx(float(model.temperature))


def test_soft_target_model_trains_with_labels_and_keeps_its_setting_through_config():
    train, _ = clip.digit_split(seed=1)
    model, _, history = clip.train_clip(train[0][:256], train[1][:256], epochs=1, seed=0,
                                     same_class_targets=True)
    assert np.isfinite(history.history["loss"]).all()
    assert clip.DigitCLIP.from_config(model.get_config()).same_class_targets


def test_bad_inputs_raise_clear_errors():
    model = clip.build_clip(20, seed=0)
    images = np.zeros((4, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match=r"images\[\.\.\., None\]"):
        model({"images": images[..., 0], "token_ids": np.ones((4, 3), "int32")})
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\)"):
        model({"images": np.zeros((4, 28, 28, 1), "float32"),
               "token_ids": np.ones((4, 3), "int32")})
    with pytest.raises(ValueError, match="4 images but 3"):
        model({"images": images, "token_ids": np.ones((3, 3), "int32")})
    with pytest.raises(ValueError, match="4 images but 5"):
        clip.CaptionedDigits(images, np.zeros(5, "int32"), clip.CaptionTokenizer.from_templates())
    with pytest.raises(ValueError, match="one non-empty list"):
        clip.zero_shot_classify(model, clip.CaptionTokenizer.from_templates(), images,
                             ["a seven", "a two"])
    with pytest.raises(ValueError, match="0..9"):
        clip.digit_captions([3, 12])
