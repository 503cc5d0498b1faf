"""Each family built tiny, with its own tokenizer, pre-trained a few steps on real text."""

import dataclasses
import os

import keras
import keras_hub
import numpy as np
import pytest

from ptft_keras import config, data
from ptft_keras.objectives import families
from ptft_keras import finetuning, models

VOCABULARY = 600


@pytest.fixture(scope="module")
def texts():
    return data.load_corpus("en", max_chars=25_000)


@pytest.fixture(scope="module")
def tokenizer_of(texts):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = families.train_tokenizer(name, texts, VOCABULARY)
        return cache[name]

    return get


BUILT = {}  # name -> the pre-trained Family, for the fine-tuning test


@pytest.fixture(scope="module")
def result_of(texts, tokenizer_of):
    cache = {}

    def get(name):
        if name not in cache:
            config.set_seed(0)
            family = families.build_family(name, tokenizer_of(name), size="tiny")
            cache[name] = families.pretrain_family(family, texts, epochs=2, batch_size=16)
            BUILT[name] = family
        return cache[name]

    return get


SPECIAL_IDS = {  # token -> id each keras-hub family class expects to find
    "bert": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4},
    "gpt2": {"<|endoftext|>": 0},  # keras-hub's GPT-2 pads with id 0: the end token is id 0
    "roberta": {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4},
    "albert": {"<pad>": 0, "<unk>": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4},
    "deberta": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4},
    "t5": {"<pad>": 0, "</s>": 1, "<unk>": 2, "<extra_id_0>": 3, "<extra_id_31>": 34},
    "xlnet": {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4, "<pad>": 5, "<mask>": 6},
}

TOKENIZER_CLASS = {
    "bert": keras_hub.models.BertTokenizer, "gpt2": keras_hub.models.GPT2Tokenizer,
    "roberta": keras_hub.models.RobertaTokenizer, "albert": keras_hub.models.AlbertTokenizer,
    "deberta": keras_hub.models.DebertaV3Tokenizer, "t5": keras_hub.models.T5Tokenizer,
    "xlnet": keras_hub.tokenizers.SentencePieceTokenizer,
}


@pytest.mark.parametrize("name", families.FAMILIES)
def test_tokenizer_has_the_family_special_tokens(name, tokenizer_of):
    tokenizer = tokenizer_of(name)
    assert isinstance(tokenizer, TOKENIZER_CLASS[name])
    assert abs(tokenizer.vocabulary_size() - VOCABULARY) <= 5
    for token, expected in SPECIAL_IDS[name].items():
        assert tokenizer.token_to_id(token) == expected, token
    text = "Call me Ishmael."
    ids = list(tokenizer([text])[0])  # keras-hub returns Python lists for Python input
    assert len(ids) > 2 and max(ids) < tokenizer.vocabulary_size()
    if name != "bert":  # BPE and SentencePiece are lossless (WordPiece lowercases)
        assert tokenizer.detokenize([ids])[0].strip() == text
    if name == "t5":  # sentinels are single pieces, matched in text
        assert list(tokenizer(["<extra_id_5>"])[0])[-1] == 8


@pytest.mark.parametrize("name", families.FAMILIES)
def test_a_few_steps_lower_the_family_loss(name, result_of):
    result = result_of(name)
    assert 3 <= result["steps"] <= 60
    # Untrained, every family starts near ln(vocabulary) (+ ln 2 for the NSP/SOP head).
    start = np.log(VOCABULARY) + (np.log(2) if name in ("bert", "albert") else 0)
    assert abs(result["loss_before"] - start) < 0.5
    assert result["loss_after"] < result["loss_before"] - 0.2


def toy_task(n, seed):
    """Texts of 6 words from one of two word sets: label = which set (separable by tokens)."""
    rng = np.random.default_rng(seed)
    words = (["whale", "sea", "ship", "captain", "harpoon"], ["land", "house", "town", "street", "farm"])
    labels = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(words[y], 6)) for y in labels]
    return texts, labels.astype("int32")


@pytest.mark.parametrize("name", families.FAMILIES)
def test_each_pretrained_family_fine_tunes_to_a_classifier(name, result_of):
    result_of(name)  # pre-trains it with its own objective first
    family = BUILT[name]
    train_texts, y_train = toy_task(96, 0)
    test_texts, y_test = toy_task(64, 1)
    x_train = families.classification_inputs(family, train_texts)
    x_test = families.classification_inputs(family, test_texts)
    assert set(x_train) == set(family.backbone.input)
    mask_key = "encoder_padding_mask" if name == "t5" else "padding_mask"
    assert (x_train[mask_key].sum(1) > 6).all()  # six words + special tokens, rest padding
    before = [np.array(w) for w in family.backbone.get_weights()]
    config.set_seed(0)
    model = models.build_classifier(family.backbone, 2, pooling="mean", dropout=0.0)
    finetuning.compile_classifier(model, learning_rate=3e-3)
    start_loss = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["loss"]
    model.fit(x_train, y_train, epochs=12, batch_size=32, verbose=0)
    metrics = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    assert metrics["loss"] < start_loss - 0.2, (start_loss, metrics)
    assert metrics["accuracy"] >= 0.9, metrics
    # Fine-tuning trained the pre-trained backbone itself (same object, weights moved).
    after = family.backbone.get_weights()
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(after, before)) > 1e-4


def test_classification_inputs_wrap_and_pad(result_of):
    result_of("bert")
    family = BUILT["bert"]
    x = families.classification_inputs(family, ["call me ishmael", "a " * 500])
    tok = family.tokenizer
    n = int(x["padding_mask"][0].sum())
    assert x["token_ids"][0, 0] == tok.cls_token_id and x["token_ids"][0, n - 1] == tok.sep_token_id
    assert (x["token_ids"][0, n:] == tok.pad_token_id).all() and (x["segment_ids"] == 0).all()
    assert x["padding_mask"][1].all() and x["token_ids"][1, -1] == tok.sep_token_id  # truncated
    with pytest.raises(ValueError, match="texts is empty"):
        families.classification_inputs(family, [])


def test_family_table(result_of):
    table = families.family_table([result_of(name) for name in families.FAMILIES])
    assert list(table.index) == list(families.FAMILIES)
    assert {"params", "objective", "attention", "loss_before", "loss_after"} <= set(table.columns)
    assert table.loc["albert", "params"] < table.loc["bert", "params"] / 2
    assert "permutation" in table.loc["xlnet", "objective"]
    assert "span corruption" in table.loc["t5", "objective"]
    assert "NSP" in table.loc["bert", "objective"] and "SOP" in table.loc["albert", "objective"]
    assert (table["params"] >= table["backbone_params"]).all()


def test_bert_masks_statically_roberta_dynamically(tokenizer_of, texts):
    """BERT: one masking reused every epoch; RoBERTa: new masks each epoch."""
    for name, dynamic in (("bert", False), ("roberta", True)):
        family = families.build_family(name, tokenizer_of(name))
        dataset = family.make_data(texts[:60], batch_size=8)
        first = dataset[0][0]["token_ids"].copy()
        dataset.on_epoch_end()
        assert np.array_equal(dataset[0][0]["token_ids"], first) != dynamic, name
        # Same seed, same epoch: the same batches (reproducible runs).
        again = family.make_data(texts[:60], batch_size=8)[0][0]["token_ids"]
        assert np.array_equal(again, first)


def test_sentence_pair_batches_have_segments_and_labels(tokenizer_of, texts):
    family = families.build_family("albert", tokenizer_of("albert"))
    x, y, w = family.make_data(texts[:60], batch_size=8)[0]
    tokenizer = family.tokenizer
    assert (x["token_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert set(np.unique(x["segment_ids"])) == {0, 1} and set(y) == {"mlm", "sop"}
    # Segment 1 ends with [SEP]; padding follows the last [SEP].
    for ids, segments, padding in zip(x["token_ids"], x["segment_ids"], x["padding_mask"]):
        last = int(padding.sum()) - 1
        assert ids[last] == tokenizer.sep_token_id and segments[last] == 1
        assert (ids[last + 1 :] == tokenizer.pad_token_id).all()


def test_albert_parameter_counts_follow_the_formula():
    V, E, H, I, L, P = 500, 16, 64, 128, 4, 64  # noqa: E741 (the papers' letters)
    albert = keras_hub.models.AlbertBackbone(vocabulary_size=V, num_layers=L, num_heads=2,
                                             embedding_dim=E, hidden_dim=H, intermediate_dim=I,
                                             max_sequence_length=P)
    bert = keras_hub.models.BertBackbone(vocabulary_size=V, num_layers=L, num_heads=2,
                                         hidden_dim=H, intermediate_dim=I, max_sequence_length=P)
    # One encoder layer: Q, K, V, O projections with biases, FFN up and down, two LayerNorms.
    layer = 4 * (H * H + H) + (H * I + I) + (I * H + H) + 2 * 2 * H
    pooler = H * H + H
    # BERT: token, position and segment tables in H, a LayerNorm, L separate layers.
    bert_expected = (V + P + 2) * H + 2 * H + L * layer + pooler
    # ALBERT: the tables in E (factorized), a LayerNorm in E, an E -> H projection, and ONE
    # layer shared by all L depths.
    albert_expected = (V + P + 2) * E + 2 * E + (E * H + H) + layer + pooler
    assert bert.count_params() == bert_expected == 174_400
    assert albert.count_params() == albert_expected == 47_808
    # Doubling the depth costs ALBERT nothing: the layer is reused.
    deeper = keras_hub.models.AlbertBackbone(vocabulary_size=V, num_layers=2 * L, num_heads=2,
                                             embedding_dim=E, hidden_dim=H, intermediate_dim=I,
                                             max_sequence_length=P)
    assert deeper.count_params() == albert.count_params()


def test_deberta_mlm_pretrainer_reloads_with_tied_head(tmp_path, tokenizer_of, texts):
    config.set_seed(0)
    family = families.build_family("deberta", tokenizer_of("deberta"))
    batch = family.make_data(texts[:40], batch_size=4)[0][0]
    before = np.asarray(family.model(batch))
    path = os.path.join(tmp_path, "deberta_mlm.keras")
    family.model.save(path)
    loaded = keras.models.load_model(path)
    assert np.allclose(np.asarray(loaded(batch)), before, atol=1e-5)
    assert loaded.mlm_head.token_embedding is loaded.backbone.token_embedding


def test_build_family_rejects_unknown_names(tokenizer_of):
    with pytest.raises(ValueError, match="gpt2"):
        families.build_family("gpt5", tokenizer_of("gpt2"))
    with pytest.raises(ValueError, match="tiny"):
        families.build_family("gpt2", tokenizer_of("gpt2"), size="huge")


def test_families_are_one_registry_of_specs(tokenizer_of, texts, monkeypatch):
    """The registry is data: one FamilySpec per family; a new family is one more entry."""
    assert list(families.FAMILIES) == ["gpt2", "bert", "roberta", "albert", "xlnet", "t5",
                                       "deberta"]
    for name, spec in families.FAMILIES.items():
        assert isinstance(spec, families.FamilySpec) and spec.name == name
        assert families.INFO[name] is spec.info
        assert set(spec.info) == {"architecture", "objective", "attention", "tokenizer"}
    # A BERT variant without the NSP head: the spec of RoBERTa's objective on BERT's backbone.
    spec = dataclasses.replace(
        families.FAMILIES["bert"], name="bert-mlm",
        info={**families.INFO["bert"], "objective": "MLM (dynamic masking)"},
        pretrainer=families.FAMILIES["roberta"].pretrainer,
        make_data=families.FAMILIES["roberta"].make_data)
    monkeypatch.setitem(families.FAMILIES, "bert-mlm", spec)
    family = families.build_family("bert-mlm", tokenizer_of("bert"))
    assert isinstance(family.backbone, keras_hub.models.BertBackbone)
    assert family.info["objective"] == "MLM (dynamic masking)"
    x, y, w = family.make_data(texts[:20], batch_size=4)[0]
    assert (x["token_ids"][:, 0] == family.tokenizer.cls_token_id).all() and "segment_ids" not in x
    inputs = families.classification_inputs(family, ["call me ishmael"])
    assert inputs["token_ids"][0, 0] == family.tokenizer.cls_token_id
