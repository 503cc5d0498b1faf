"""Data: the course's datasets, input checks, the epoch-seeded batch stream, synthetic generators.

- ``loaders``: real datasets shipped in ``data/`` (checked against ``MANIFEST.json``).
- ``validation``: the ONE place that checks texts, labels and token ids (clear errors, early).
- ``datasets``: ``EpochDataset``, the one ``PyDataset`` whose batches are a function of
  ``(seed, epoch)`` (Keras; imported on first use).
- ``finance``, ``sensors``: clearly labelled synthetic generators (chapter 5).

NumPy and pandas only, so loading data does not start TensorFlow.
"""

from ptft_keras.data.loaders import (
    CORPORA,
    DATA_DIR_VARIABLE,
    DOMAINS,
    DRUG_LABELS,
    SPLITS,
    DataError,
    data_dir,
    load_corpus,
    load_drug_reviews,
    load_en_reviews,
    load_imdb_online,
    load_imdb_texts,
    load_zh_reviews,
    manifest,
    to_dataset,
    verify,
)
from ptft_keras.data.validation import check_ids_fit, check_labels, check_texts_labels


def __getattr__(name):
    # Keras-side parts load on first use: ``import ptft_keras.data`` stays TensorFlow-free.
    if name == "EpochDataset":
        from ptft_keras.data.datasets import EpochDataset

        return EpochDataset
    if name in ("datasets", "finance", "sensors"):
        import importlib

        return importlib.import_module(f"ptft_keras.data.{name}")
    raise AttributeError(f"module 'ptft_keras.data' has no attribute {name!r}")
