"""Tokenizers: train a WordPiece vocabulary in seconds, use it from keras-hub.

Why two libraries: training uses Hugging Face ``tokenizers``' BERT normalizer and pre-tokenizer
(Rust) and its WordPiece training algorithm, re-implemented here so that ties break the same
way in every process (16k tokens on 3 MB of text in a few seconds; keras-hub's
``compute_word_piece_vocabulary`` takes minutes). The vocabulary is plain WordPiece, so
keras-hub's ``WordPieceTokenizer`` reads it and produces the same ids as Hugging Face's
(tested in ``tests/test_tokenizers.py``); the model side then stays pure Keras and serializable.

Chinese needs no word segmentation here: both libraries split CJK characters into single tokens.

``WordPieceTokenizer`` bundles it all in one object: ``WordPieceTokenizer.train(texts)``,
``.encode(texts, sequence_length)``, ``.decode(ids)``, ``.save(path)`` / ``.load(path)``.
"""

import os

import numpy as np

from ptft_keras.data.validation import check_ids_fit, check_texts_labels  # noqa: F401 (re-export)

# Order fixes the ids: [PAD] must be 0 (padding masks test ``id != 0``).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(len(SPECIAL_TOKENS))


def train_wordpiece(texts, vocab_size=8000, lowercase=True, min_frequency=2, limit_alphabet=1000):
    """Train a WordPiece vocabulary on ``texts`` (list of str); returns the vocabulary (list of str).

    The first entries are ``SPECIAL_TOKENS`` so ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK].
    Deterministic: the same texts and arguments give the same vocabulary, byte for byte, in
    every process (see ``_learn_wordpieces``). ``limit_alphabet``: at most that many distinct
    characters (the most frequent) are kept; rarer ones become [UNK] (Hugging Face's default).
    """
    if (isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer))
            or vocab_size <= len(SPECIAL_TOKENS)):
        raise ValueError(
            f"vocab_size must be an int larger than the {len(SPECIAL_TOKENS)} special tokens, got "
            f"{vocab_size!r}: the course uses 2,000-8,000 for English.")
    texts, _ = check_texts_labels(texts, name="tokenizer training texts")
    word_counts = _word_counts(texts, lowercase)
    learned = _learn_wordpieces(word_counts, vocab_size, min_frequency, limit_alphabet)
    # WordPiece ids carry no meaning of their own: sorted, so a token's id is fixed too.
    return list(SPECIAL_TOKENS) + sorted(learned)


def _bert_pipeline(lowercase):
    """Hugging Face's BERT normalizer and pre-tokenizer, set up as keras-hub's tokenizer reads text."""
    from tokenizers import BertWordPieceTokenizer, normalizers

    bert = BertWordPieceTokenizer(
        clean_text=True,
        handle_chinese_chars=True,  # every CJK character its own token
        strip_accents=lowercase,  # BERT-uncased convention: lowercase and strip accents together
        lowercase=lowercase,
    )
    if lowercase:
        # keras-hub lowercases with NFKC case folding, which also maps full-width punctuation
        # ("，" -> ","); normalise the same way here or the two disagree on Chinese text.
        bert.normalizer = normalizers.Sequence([normalizers.NFKC(), bert.normalizer])
    return bert.normalizer, bert.pre_tokenizer


def _word_counts(texts, lowercase):
    """{word: count} after BERT normalisation and pre-tokenisation (whitespace, punctuation, CJK)."""
    from collections import Counter

    normalizer, pre_tokenizer = _bert_pipeline(lowercase)
    counts = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(
            normalizer.normalize_str(text)))
    return counts


def _learn_wordpieces(word_counts, vocab_size, min_frequency, limit_alphabet, prefix="##"):
    """The learned (non-special) tokens: Hugging Face's WordPiece trainer, deterministic.

    The same algorithm as ``tokenizers``' ``WordPieceTrainer`` (BPE merges with the ``##``
    continuation prefix): the ``limit_alphabet`` most frequent characters, their ``##`` forms,
    then merges of the most frequent adjacent pair until ``vocab_size`` tokens (specials
    included) or no pair occurs ``min_frequency`` times. The Rust trainer breaks ties (equally
    frequent characters at the alphabet limit, equally frequent pairs) in hash-map order, which
    changes from process to process, so its vocabulary MEMBERSHIP changed from run to run, not
    only the order. Here every tie is broken by a fixed rule: characters by (count desc,
    character), pairs by the ids of their parts, and ids are given in a fixed order (characters
    sorted, ``##`` forms in sorted-word order, merged tokens in merge order).
    """
    import heapq
    from collections import defaultdict
    from itertools import pairwise

    char_counts = defaultdict(int)
    for word, count in word_counts.items():
        for char in word:
            char_counts[char] += count
    alphabet = sorted(char_counts, key=lambda char: (-char_counts[char], char))
    if limit_alphabet is not None:
        alphabet = alphabet[:limit_alphabet]
    allowed = set(alphabet)

    tokens = list(SPECIAL_TOKENS)
    ids = {token: i for i, token in enumerate(tokens)}

    def token_id(token):
        if token not in ids:
            ids[token] = len(tokens)
            tokens.append(token)
        return ids[token]

    for char in sorted(alphabet):
        token_id(char)
    words, counts = [], []
    for word in sorted(word_counts):
        symbols = [token_id(char if i == 0 else prefix + char)
                   for i, char in enumerate(word) if char in allowed]
        words.append(symbols)
        counts.append(word_counts[word])

    pair_counts = defaultdict(int)
    where = defaultdict(set)  # pair -> indices of the words that (may) contain it
    for index, (symbols, count) in enumerate(zip(words, counts)):
        for pair in pairwise(symbols):
            pair_counts[pair] += count
            where[pair].add(index)
    # Max-heap on count; equal counts: the smaller (left id, right id) first, as in Rust.
    heap = [(-count, left, right) for (left, right), count in pair_counts.items()]
    heapq.heapify(heap)

    while len(tokens) < vocab_size and heap:
        stale, left, right = heapq.heappop(heap)
        count = pair_counts.get((left, right), 0)
        if -stale != count:  # counts only fall after they were queued: re-queue the true one
            if count > 0:
                heapq.heappush(heap, (-count, left, right))
            continue
        if count < max(min_frequency, 1):
            break
        new = token_id(tokens[left] + tokens[right].removeprefix(prefix))
        grown = set()
        for index in sorted(where.pop((left, right), ())):
            symbols = words[index]
            merged, i, found = [], 0, False
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    merged.append(new)
                    i += 2
                    found = True
                else:
                    merged.append(symbols[i])
                    i += 1
            if not found:
                continue
            count = counts[index]
            for pair in pairwise(symbols):
                pair_counts[pair] -= count
            for pair in pairwise(merged):
                pair_counts[pair] += count
                if new in pair:
                    where[pair].add(index)
                    grown.add(pair)
            words[index] = merged
        for pair in sorted(grown):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], *pair))
    return [token for token in tokens[len(SPECIAL_TOKENS):] if token not in SPECIAL_TOKENS]


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


def pack(first, sequence_length, second=None, start_id=CLS, end_id=SEP, pad_id=PAD):
    """The one sequence packer: ``[CLS] A [SEP] [PAD]...``, or ``[CLS] A [SEP] B [SEP] [PAD]...``.

    first, second: token-id lists (list of lists, or a ``tf.RaggedTensor``), N rows each.
    Returns int32 ``token_ids`` (N, sequence_length); with ``second``, also ``segment_ids``
    (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``, 0 on padding). Long inputs are cut so that
    ``end_id`` always closes the sequence; a long pair loses tokens from the end of the longer
    segment first (keras-hub's ``StartEndPacker`` / ``MultiSegmentPacker(truncate="round_robin")``,
    the packers keras-hub's BERT preprocessors use).
    """
    import keras_hub
    import tensorflow as tf  # data side: keras-hub packers take ragged tensors

    def ragged(rows):
        if isinstance(rows, tf.RaggedTensor):
            return tf.cast(rows, "int32")
        # One flat array + row lengths: ~100x faster than tf.ragged.constant on Python lists.
        rows = [np.asarray(r, "int32").reshape(-1) for r in rows]
        flat = np.concatenate(rows) if rows else np.zeros(0, "int32")
        return tf.RaggedTensor.from_row_lengths(flat, [len(r) for r in rows])

    if second is None:
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length, start_value=start_id, end_value=end_id,
            pad_value=pad_id)
        return np.asarray(packer(ragged(first)), "int32")
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=sequence_length, start_value=start_id, end_value=end_id,
        pad_value=pad_id, truncate="round_robin")
    token_ids, segment_ids = packer((ragged(first), ragged(second)))
    return np.asarray(token_ids, "int32"), np.asarray(segment_ids, "int32")


def encode(texts, tokenizer, sequence_length, start_id=CLS, end_id=SEP, pad_id=PAD):
    """Tokenize and pack ``texts`` as ``[CLS] tokens [SEP] [PAD]...`` (see ``pack``).

    Returns an int32 array of shape (len(texts), sequence_length); long texts are truncated so
    that ``end_id`` always ends the sequence. ``start_id`` / ``end_id`` / ``pad_id``: the
    tokenizer's own special ids when they are not the course's (e.g. MiniLM's 101 / 102 / 0).
    """
    texts, _ = check_texts_labels(texts, name="texts to encode")  # str, valid UTF-8, non-empty
    run = _graph_encoder(tokenizer, int(sequence_length), (int(start_id), int(end_id), int(pad_id)))
    ids = []
    for start in range(0, len(texts), 4096):  # chunks keep peak memory small on big corpora
        ids.append(np.asarray(run(texts[start : start + 4096]), "int32"))
    return np.concatenate(ids)


_GRAPH_ENCODERS = {}  # (id(tokenizer), sequence_length, special ids) -> (tokenizer, function)


def _graph_encoder(tokenizer, sequence_length, special_ids=(CLS, SEP, PAD)):
    """Tokenize + pack as one ``tf.function``: keras-hub 0.32 runs its tokenizers in pure Python
    when called eagerly (about 30x slower on thousands of texts) and only in a graph on
    tensorflow-text; the ids are the same (tested)."""
    import keras_hub
    import tensorflow as tf

    key = (id(tokenizer), sequence_length, special_ids)
    if key not in _GRAPH_ENCODERS or _GRAPH_ENCODERS[key][0] is not tokenizer:
        start_id, end_id, pad_id = special_ids
        packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length, start_value=start_id, end_value=end_id,
            pad_value=pad_id)
        graph = tf.function(lambda x: packer(tokenizer(x)), autograph=False,
                            input_signature=[tf.TensorSpec([None], tf.string)])
        _GRAPH_ENCODERS[key] = (tokenizer, lambda texts: graph(tf.constant(texts, tf.string)))
    return _GRAPH_ENCODERS[key][1]


def _check_sequence_length(sequence_length):
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)):
        raise ValueError(
            f"sequence_length must be an int, got {sequence_length!r} "
            f"({type(sequence_length).__name__}): pass e.g. sequence_length=48."
        )
    if sequence_length < 3:
        raise ValueError(
            f"sequence_length={sequence_length} leaves no room for text: every sequence is "
            f"[CLS] tokens... [SEP], so it needs at least 3 positions. Pass sequence_length=3 or "
            f"more (the course uses 48-128)."
        )
    return int(sequence_length)


class WordPieceTokenizer:
    """A trained WordPiece vocabulary with the course's packing, in one object.

    A thin wrapper over the functions above (``train_wordpiece``, ``wordpiece_tokenizer``,
    ``encode``, ``save_vocab`` / ``load_vocab``): same vocabulary, same ids.

    >>> tok = WordPieceTokenizer.train(texts, vocabulary_size=4000)
    >>> ids = tok.encode(texts, sequence_length=48)     # int32 (N, 48), 0 = [PAD]
    >>> tok.decode(ids[:2])                             # ['the movie was ...', ...]
    >>> tok.save("artifacts/vocab.txt"); tok = WordPieceTokenizer.load("artifacts/vocab.txt")

    ``keras_tokenizer()`` is the keras-hub ``WordPieceTokenizer`` layer (built once, cached),
    what ``models.TextClassifier`` puts inside a saved model.
    """

    def __init__(self, vocabulary, lowercase=True):
        if isinstance(vocabulary, (str, bytes)):
            raise ValueError(
                "WordPieceTokenizer(vocabulary) takes a list of tokens; to read a vocab.txt "
                "file use WordPieceTokenizer.load(path)."
            )
        vocabulary = [str(token) for token in vocabulary]
        check_vocab(vocabulary)
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("The vocabulary has duplicate tokens: every token needs one id.")
        self._vocabulary = vocabulary
        self.lowercase = bool(lowercase)
        self._keras_tokenizer = None

    @classmethod
    def train(cls, texts, vocabulary_size=8000, lowercase=True, min_frequency=2):
        """Train a vocabulary of at most ``vocabulary_size`` tokens on ``texts`` (list of str)."""
        vocab = train_wordpiece(
            texts, vocab_size=vocabulary_size, lowercase=lowercase, min_frequency=min_frequency
        )
        return cls(vocab, lowercase=lowercase)

    @classmethod
    def load(cls, path, lowercase=True):
        """Read a ``vocab.txt`` (one token per line); ``path`` may be its folder."""
        if os.path.isdir(path):
            path = os.path.join(path, "vocab.txt")
        return cls(load_vocab(path), lowercase=lowercase)

    def save(self, path):
        """Write the vocabulary as ``vocab.txt`` (``path`` may be a folder); returns its path."""
        if os.path.isdir(path) or str(path).endswith(("/", os.sep)):
            path = os.path.join(path, "vocab.txt")
        save_vocab(self._vocabulary, path)
        return str(path)

    @property
    def vocabulary(self):
        """The tokens, id order (a copy): ``vocabulary[0] == "[PAD]"``."""
        return list(self._vocabulary)

    def vocabulary_size(self):
        return len(self._vocabulary)

    def keras_tokenizer(self):
        """The keras-hub ``WordPieceTokenizer`` for this vocabulary (str -> ragged ids)."""
        if self._keras_tokenizer is None:
            self._keras_tokenizer = wordpiece_tokenizer(self._vocabulary, lowercase=self.lowercase)
        return self._keras_tokenizer

    def encode(self, texts, sequence_length):
        """``[CLS] tokens [SEP] [PAD]...`` ids: int32 array (len(texts), sequence_length)."""
        sequence_length = _check_sequence_length(sequence_length)
        return encode(texts, self.keras_tokenizer(), sequence_length)

    def decode(self, ids):
        """Token ids back to text, without [PAD] / [CLS] / [SEP].

        ids: (N, S) (or a list of id lists) -> list of N str; one sequence (S,) -> one str.
        WordPiece is lossy: the text comes back lowercased, accents stripped, with spaces
        around punctuation.
        """
        if hasattr(ids, "to_list"):  # tf.RaggedTensor
            ids = ids.to_list()
        elif not isinstance(ids, (list, tuple)):
            ids = np.asarray(ids)  # numpy, tf / backend tensors
            if ids.ndim not in (1, 2):
                raise ValueError(f"decode() takes ids (S,) or a batch (N, S), got {ids.shape}.")
        single = len(ids) > 0 and np.ndim(ids[0]) == 0
        rows = [ids] if single else ids
        skip = {PAD, CLS, SEP}
        size = self.vocabulary_size()
        cleaned = []
        for row in rows:
            row = [int(i) for i in np.asarray(row).reshape(-1)]
            bad = [i for i in row if not 0 <= i < size]
            if bad:
                raise ValueError(
                    f"ids {bad[:5]} are outside this vocabulary (0..{size - 1}): were they "
                    f"encoded with another tokenizer?"
                )
            cleaned.append([i for i in row if i not in skip])
        texts = self.keras_tokenizer().detokenize(cleaned)  # eager: keras-hub's Python path
        texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
        return texts[0] if single else texts

    def __repr__(self):
        return (f"WordPieceTokenizer(vocabulary_size={self.vocabulary_size()}, "
                f"lowercase={self.lowercase})")
