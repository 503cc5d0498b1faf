import numpy as np
import pytest

from ptft_keras import tokenizers

EN = [
    "The movie was surprisingly good, and the acting felt honest.",
    "A dull, overlong film; I wanted my two hours back.",
    "Battery life is great but the screen scratches easily!",
    "Café owners were naïve about the rent.",
]
ZH = ["这个手机很好用，电池也耐用。", "质量太差了，不推荐购买。", "物流很快，包装完好。"]


@pytest.fixture(scope="module")
def vocab():
    return tokenizers.train_wordpiece((EN + ZH) * 20, vocab_size=300, min_frequency=1)


def test_special_tokens_come_first(vocab):
    assert tuple(vocab[:5]) == tokenizers.SPECIAL_TOKENS
    assert len(set(vocab)) == len(vocab)


def test_learned_tokens_come_in_a_fixed_order(vocab):
    # Sorted, so ids do not depend on the trainer's hash-order tie-breaking.
    assert vocab[5:] == sorted(vocab[5:])


def test_keras_hub_ids_equal_hf_ids(vocab, tmp_path):
    # The reference is HF tokenizers' own encoder on the same vocab.txt.
    from tokenizers import BertWordPieceTokenizer, normalizers

    path = tmp_path / "vocab.txt"
    tokenizers.save_vocab(vocab, str(path))
    hf = BertWordPieceTokenizer(str(path), lowercase=True, strip_accents=True)
    hf.normalizer = normalizers.Sequence([normalizers.NFKC(), hf.normalizer])
    ours = tokenizers.wordpiece_tokenizer(tokenizers.load_vocab(str(path)))
    for text in EN + ZH + ["unseen wordz and 新的字"]:
        expected = hf.encode(text, add_special_tokens=False).ids
        got = np.asarray(ours(text)).tolist()
        assert got == expected, text


def test_chinese_characters_are_single_tokens(vocab):
    tok = tokenizers.wordpiece_tokenizer(vocab)
    pieces = [vocab[i] for i in np.asarray(tok("质量太差"))]
    assert pieces == ["质", "量", "太", "差"]


def test_encode_packs_cls_sep_and_pads(vocab):
    tok = tokenizers.wordpiece_tokenizer(vocab)
    ids = tokenizers.encode(["good", EN[0] * 5], tok, 12)
    assert ids.shape == (2, 12) and ids.dtype == np.int32
    assert ids[0, 0] == tokenizers.CLS and tokenizers.SEP in ids[0] and ids[0, -1] == tokenizers.PAD
    assert ids[1, 0] == tokenizers.CLS and ids[1, -1] == tokenizers.SEP  # truncated, still closed


def test_bad_vocab_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="must start with"):
        tokenizers.wordpiece_tokenizer(["a", "b", "c", "d", "e"])
    with pytest.raises(FileNotFoundError, match="train_wordpiece"):
        tokenizers.load_vocab(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="empty"):
        tokenizers.train_wordpiece([])


def test_bad_text_is_refused_before_tokenizing(vocab):
    tok = tokenizers.wordpiece_tokenizer(vocab)
    with pytest.raises(ValueError, match="UTF-8"):
        tokenizers.encode(["fine", b"caf\xe9 latin-1 bytes"], tok, 8)
    with pytest.raises(ValueError, match="empty"):
        tokenizers.encode([], tok, 8)
    # Valid UTF-8 bytes are decoded, not refused.
    assert tokenizers.encode([b"caf\xc3\xa9"], tok, 8).shape == (1, 8)


def test_vocab_model_mismatch_is_reported():
    with pytest.raises(ValueError, match="do not match"):
        tokenizers.check_ids_fit(np.array([[2, 500, 3]]), vocabulary_size=300)
    tokenizers.check_ids_fit(np.array([[2, 299, 3]]), vocabulary_size=300)


# --- the WordPieceTokenizer class: the same vocabulary and ids as the functions above ----------
@pytest.fixture(scope="module")
def tok(vocab):
    return tokenizers.WordPieceTokenizer(vocab)


def test_train_gives_a_course_vocabulary():
    # (Two trainings may differ in a last tied token, so compare structure, not equality.)
    trained = tokenizers.WordPieceTokenizer.train((EN + ZH) * 20, vocabulary_size=300,
                                                  min_frequency=1)
    assert tuple(trained.vocabulary[:5]) == tokenizers.SPECIAL_TOKENS
    assert 50 < trained.vocabulary_size() <= 300 and "movie" in trained.vocabulary
    assert trained.lowercase and "the" in trained.decode(trained.encode(["THE"], 3))


def test_class_wraps_the_functions_with_the_same_ids(tok, vocab):
    assert tok.vocabulary == vocab and tok.vocabulary_size() == len(vocab)
    keras_tok = tok.keras_tokenizer()
    assert keras_tok is tok.keras_tokenizer()  # built once
    assert keras_tok.get_vocabulary() == vocab
    ids = tok.encode(EN + ZH, sequence_length=20)
    expected = tokenizers.encode(EN + ZH, tokenizers.wordpiece_tokenizer(vocab), 20)
    assert ids.dtype == np.int32 and ids.shape == (7, 20)
    np.testing.assert_array_equal(ids, expected)
    assert (ids[:, 0] == tokenizers.CLS).all() and (ids == tokenizers.PAD).any()
    # The vocabulary property is a copy: editing it cannot corrupt the tokenizer.
    tok.vocabulary.append("zzz")
    assert tok.vocabulary_size() == len(vocab)


def test_decode_drops_special_tokens_and_inverts_encode(tok):
    ids = tok.encode(["the movie was good", "质量太差"], sequence_length=12)
    assert tok.decode(ids) == ["the movie was good", "质 量 太 差"]
    assert tok.decode(ids[0]) == "the movie was good"  # one sequence -> one string
    assert tok.decode([[tokenizers.CLS, tokenizers.SEP, tokenizers.PAD]]) == [""]
    # Lossy like every uncased WordPiece: lowercased, accents stripped, punctuation split off.
    assert tok.decode(tok.encode(["Café, naïve!"], 12)) == ["cafe , naive !"]
    with pytest.raises(ValueError, match="outside this vocabulary"):
        tok.decode([[2, 10_000, 3]])


def test_save_and_load_round_trip(tok, tmp_path):
    path = tok.save(str(tmp_path / "run" / "vocab.txt"))
    with open(path, encoding="utf-8") as f:
        assert f.read().splitlines() == tok.vocabulary
    for source in (path, str(tmp_path / "run")):  # the file, or its folder
        again = tokenizers.WordPieceTokenizer.load(source)
        assert again.vocabulary == tok.vocabulary
        np.testing.assert_array_equal(again.encode(EN, 16), tok.encode(EN, 16))
    with pytest.raises(FileNotFoundError, match="train_wordpiece"):
        tokenizers.WordPieceTokenizer.load(str(tmp_path / "missing.txt"))


def test_class_errors_name_the_fix(tok):
    with pytest.raises(ValueError, match="empty"):
        tokenizers.WordPieceTokenizer.train([])
    with pytest.raises(ValueError, match="index 1"):
        tokenizers.WordPieceTokenizer.train(["fine", 3, "also fine"])
    with pytest.raises(ValueError, match="index 1"):
        tok.encode(["fine", None], sequence_length=8)
    with pytest.raises(ValueError, match="wrap it in a list"):
        tok.encode("one string", sequence_length=8)
    with pytest.raises(ValueError, match="at least 3"):
        tok.encode(EN, sequence_length=2)
    with pytest.raises(ValueError, match="must be an int"):
        tok.encode(EN, sequence_length=12.5)
    with pytest.raises(ValueError, match="must start with"):
        tokenizers.WordPieceTokenizer(["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="load"):
        tokenizers.WordPieceTokenizer("vocab.txt")
    assert tok.encode(EN, sequence_length=3).shape == (4, 3)  # [CLS] one token [SEP]


# --- deterministic training (see also tests/test_reproducible.py: two separate processes) --------
def _tie_heavy_texts():
    """Many words seen exactly twice, so many pairs tie at the vocabulary's cut-off."""
    rng = np.random.default_rng(0)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(letters, size=rng.integers(3, 7))) for _ in range(400)]
    return [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)] * 2


def test_training_breaks_ties_by_a_fixed_rule():
    texts = _tie_heavy_texts()
    vocab = tokenizers.train_wordpiece(texts, vocab_size=200)
    assert len(vocab) == 200
    # The order in which the texts come (hence every insertion order inside) does not matter.
    assert tokenizers.train_wordpiece(texts[::-1], vocab_size=200) == vocab
    # Equally frequent characters at the alphabet limit: the same ones every time.
    small = tokenizers.train_wordpiece(texts, vocab_size=200, limit_alphabet=10)
    assert small == tokenizers.train_wordpiece(texts[::-1], vocab_size=200, limit_alphabet=10)


def test_training_is_hugging_face_wordpiece():
    # Same algorithm as Hugging Face's WordPiece trainer: only the ties may break differently
    # (theirs differently in every run too: 99.0-99.5% overlap between two of their own runs
    # here), so the two vocabularies share nearly every token.
    from tokenizers import BertWordPieceTokenizer, normalizers

    from ptft_keras.data import load_corpus

    texts = load_corpus("en", max_chars=50_000)
    hf = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=True,
                                lowercase=True)
    hf.normalizer = normalizers.Sequence([normalizers.NFKC(), hf.normalizer])
    hf.train_from_iterator(texts, vocab_size=1000, min_frequency=2,
                           special_tokens=list(tokenizers.SPECIAL_TOKENS), show_progress=False)
    ours = set(tokenizers.train_wordpiece(texts, vocab_size=1000))
    theirs = set(hf.get_vocab())
    assert len(ours) == len(theirs) == 1000
    assert len(ours & theirs) >= 0.97 * len(theirs)


def test_encode_in_a_graph_equals_keras_hub_eager_ids(vocab):
    # encode() tokenizes and packs inside one tf.function (keras-hub's eager path is pure
    # Python); the ids must be those of the eager tokenizer packed by ``pack``, truncation
    # included (sequence_length 8 cuts the longer texts).
    tok = tokenizers.wordpiece_tokenizer(vocab)
    texts = EN + ZH + ["", "  spaces  and\ttabs  "]
    for length in (8, 32):
        eager = tokenizers.pack([list(row) for row in tok(texts)], length)
        np.testing.assert_array_equal(tokenizers.encode(texts, tok, length), eager)
    assert (tokenizers.encode(texts, tok, 8)[:, -1] != tokenizers.PAD).any()  # some were cut
    # Another tokenizer's special ids (MiniLM packs with 101 / 102 / 0): same as pack with them.
    ids = dict(start_id=7, end_id=8, pad_id=9)
    eager = tokenizers.pack([list(row) for row in tok(texts)], 16, **ids)
    np.testing.assert_array_equal(tokenizers.encode(texts, tok, 16, **ids), eager)
    assert (eager[:, 0] == 7).all() and (eager == 9).any()
