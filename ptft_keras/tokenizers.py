"""Tokenizers: train a WordPiece vocabulary in seconds, use it from keras-hub.

Why two libraries: Hugging Face ``tokenizers`` (Rust) trains an 8k vocabulary on 10 MB of text in
about 2 s, where keras-hub's ``compute_word_piece_vocabulary`` takes minutes. The vocabulary is
plain WordPiece, so keras-hub's ``WordPieceTokenizer`` reads it and produces the same ids
(tested in ``tests/test_tokenizers.py``); the model side then stays pure Keras and serializable.

Chinese needs no word segmentation here: both libraries split CJK characters into single tokens.
"""

import os

import numpy as np

from ptft_keras.data.validation import check_ids_fit, check_texts_labels  # noqa: F401 (re-export)

# Order fixes the ids: [PAD] must be 0 (padding masks test ``id != 0``).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(len(SPECIAL_TOKENS))


def train_wordpiece(texts, vocab_size=8000, lowercase=True, min_frequency=2):
    """Train a WordPiece vocabulary on ``texts`` (list of str); returns the vocabulary (list of str).

    The first entries are ``SPECIAL_TOKENS`` so ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK].
    """
    from tokenizers import BertWordPieceTokenizer, normalizers

    texts, _ = check_texts_labels(texts, name="tokenizer training texts")
    trainer = BertWordPieceTokenizer(
        clean_text=True,
        handle_chinese_chars=True,  # every CJK character its own token
        strip_accents=lowercase,  # BERT-uncased convention: lowercase and strip accents together
        lowercase=lowercase,
    )
    if lowercase:
        # keras-hub lowercases with NFKC case folding, which also maps full-width punctuation
        # ("，" -> ","); normalise the same way here or the two disagree on Chinese text.
        trainer.normalizer = normalizers.Sequence([normalizers.NFKC(), trainer.normalizer])
    trainer.train_from_iterator(
        texts,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    # The trainer breaks ties between equally frequent merges in hash-map order, which changes
    # from process to process: the same tokens would get different ids in every run. Sorting
    # fixes the ids (WordPiece ids carry no meaning of their own). Rarely, a tie at the very end
    # of training still swaps which of two equally frequent tokens gets in.
    learned = sorted(token for token in trainer.get_vocab() if token not in SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + learned


def save_vocab(vocab, path):
    """Write one token per line (the ``vocab.txt`` format BERT checkpoints use)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")


def load_vocab(path):
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No vocabulary file at {path!r}: train one with train_wordpiece() and save_vocab()."
        )
    with open(path, encoding="utf-8") as f:
        vocab = f.read().splitlines()
    check_vocab(vocab)
    return vocab


def check_vocab(vocab):
    """Raise ValueError unless the vocabulary starts with the course's special tokens."""
    head = tuple(vocab[: len(SPECIAL_TOKENS)])
    if head != SPECIAL_TOKENS:
        raise ValueError(
            f"The vocabulary must start with {SPECIAL_TOKENS} (ids 0-4), but starts with {head}. "
            f"Train it with ptft_keras.tokenizers.train_wordpiece()."
        )


def wordpiece_tokenizer(vocab, lowercase=True):
    """A keras-hub ``WordPieceTokenizer`` for ``vocab`` (str -> ragged int ids, no padding)."""
    import keras_hub

    check_vocab(vocab)
    return keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=list(vocab), lowercase=lowercase, strip_accents=lowercase, oov_token="[UNK]"
    )


def encode(texts, tokenizer, sequence_length):
    """Tokenize and pack ``texts`` as ``[CLS] tokens [SEP] [PAD]...``.

    Returns an int32 array of shape (len(texts), sequence_length); long texts are truncated so
    that [SEP] always ends the sequence.
    """
    import keras_hub

    texts, _ = check_texts_labels(texts, name="texts to encode")  # str, valid UTF-8, non-empty
    packer = keras_hub.layers.StartEndPacker(
        sequence_length=sequence_length, start_value=CLS, end_value=SEP, pad_value=PAD
    )
    ids = []
    for start in range(0, len(texts), 4096):  # chunks keep peak memory small on big corpora
        ids.append(np.asarray(packer(tokenizer(texts[start : start + 4096]))))
    return np.concatenate(ids).astype("int32")

