"""Label-budget experiments (chapter 1.1): what does pre-training buy when labels are scarce?

The experiment trains the same classifier architecture several times -- once per *arm*
(e.g. "scratch" and "pre-trained"), label budget and seed -- and compares test accuracy.
This module holds the parts that are easy to get subtly wrong:

- ``budget_subsets``: nested, class-stratified subsets of a labeled pool (the 1% subset is
  inside the 5% subset, and so on), so that a curve over budgets is not also a curve over
  different random samples.
- ``compact_vocabulary`` / ``compress_embeddings``: reuse the token embeddings of a large
  pre-trained model (its WordPiece vocabulary, restricted to the tokens our text uses, and
  compressed by PCA) inside a small model; ``tokenizers.pack`` packs the remapped ids.
- ``build_elmo_classifier``: token embeddings + bidirectional LSTM states, averaged over the
  real tokens, layer-normalised, then one dense layer (ELMo's idea of feeding *all* layers,
  the token layer included, to the task model).
- ``encoder_features`` / ``build_head``: the frozen-encoder (feature-based) variant: pool the
  encoder's outputs once, then train only the head on them -- seconds instead of minutes.
- ``BudgetTrainer``: fits one compiled model again and again from given starting weights,
  resetting the weights and the optimizer state, so a sweep of dozens of runs traces the
  TensorFlow graph once instead of once per run.
- ``Arm`` / ``sweep`` / ``budget_table`` / ``paired_gap`` / ``plot_budget_curve``: run and
  summarise.
"""

import dataclasses
import math
import time
from typing import Any

import keras
import numpy as np
from keras import ops

from ptft_keras.data.validation import check_labels
from ptft_keras.finetuning import ModelSnapshot, compile_classifier
from ptft_keras.layers import MaskedMeanPooling
from ptft_keras.models.classifier import sequence_output


# --- which labels ---------------------------------------------------------------------------------
def budget_sizes(pool_size, fractions):
    """Number of labels for each fraction of a pool of ``pool_size`` (at least 2 each)."""
    sizes = [max(2, int(round(f * pool_size))) for f in fractions]
    if any(s > pool_size for s in sizes):
        raise ValueError(f"Fractions {list(fractions)} ask for more than the {pool_size} labels.")
    return sizes


def budget_subsets(labels, sizes, seed=0):
    """Nested, class-stratified index subsets of ``labels``: {size: int array of indices}.

    Each class is shuffled once (with ``seed``); the subset of size k takes the first
    round(k * share) indices of each class (at least one of each class), so every smaller
    subset is contained in every larger one and all keep the pool's class balance.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("The labeled pool has a single class: a classifier cannot learn from it.")
    rng = np.random.default_rng(seed)
    orders = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    shares = counts / counts.sum()
    subsets = {}
    for k in sorted(sizes):
        if k < len(classes) or k > len(labels):
            raise ValueError(f"A budget of {k} labels does not fit {len(classes)} classes and "
                             f"a pool of {len(labels)}.")
        taken = np.maximum(1, np.floor(k * shares).astype(int))
        # Hand out what flooring left over to the classes with the largest remainders.
        for i in np.argsort(-(k * shares - np.floor(k * shares)))[: k - taken.sum()]:
            taken[i] += 1
        while taken.sum() > k:  # only when the "at least one" rule over-allocated
            taken[np.argmax(taken)] -= 1
        chosen = np.concatenate([orders[c][:n] for c, n in zip(classes, taken)])
        subsets[k] = np.sort(chosen)
    return {k: subsets[k] for k in sizes}


def repeat_to(x, y, min_size):
    """Tile (x, y) until there are at least ``min_size`` examples (x may be a dict of arrays).

    With 40 labels an epoch is 2 steps; tiling makes an "epoch" at least ``min_size`` examples
    long, so early stopping checks the validation set every few steps, not after every step.
    """
    n = len(y)
    times = max(1, math.ceil(min_size / n))
    if times == 1:
        return x, y
    tile = lambda a: np.concatenate([a] * times)
    x = {k: tile(v) for k, v in x.items()} if isinstance(x, dict) else tile(x)
    return x, tile(np.asarray(y))


# --- reusing a big model's vocabulary and embeddings ---------------------------------------------
def compact_vocabulary(id_lists, source_size, special_ids, unk_id, min_count=2, first_regular=0):
    """Keep the source-vocabulary tokens that occur at least ``min_count`` times in ``id_lists``.

    id_lists: token-id sequences in the SOURCE vocabulary (e.g. MiniLM's 30,522 WordPieces).
    special_ids: source ids that must keep their place at the start (pad first: it becomes 0).
    Ids below ``first_regular`` (BERT's [unused*] slots) are never kept as regular tokens.
    Returns ``(source_ids, lookup)``: ``source_ids[i]`` is the source id of compact id ``i``;
    ``lookup[source_id]`` is the compact id (tokens not kept map to the compact id of
    ``unk_id``, which must be among ``special_ids``).
    """
    special_ids = [int(i) for i in special_ids]
    if unk_id not in special_ids:
        raise ValueError("unk_id must be one of special_ids (tokens not kept map to it).")
    flat = np.concatenate([np.asarray(ids, dtype="int64").ravel() for ids in id_lists])
    if flat.size and (flat.min() < 0 or flat.max() >= source_size):
        raise ValueError(f"Token ids must lie in [0, {source_size}).")
    counts = np.bincount(flat, minlength=source_size)
    regular = np.flatnonzero(counts >= min_count)
    regular = regular[(regular >= first_regular) & ~np.isin(regular, special_ids)]
    source_ids = np.concatenate([special_ids, regular]).astype("int64")
    lookup = np.full(source_size, special_ids.index(unk_id), dtype="int32")
    lookup[source_ids] = np.arange(len(source_ids), dtype="int32")
    return source_ids, lookup


def compress_embeddings(matrix, dim, skip=0, scale=0.05):
    """PCA of embedding rows to ``dim`` columns; returns ``(float32 (rows, dim), explained)``.

    The mean and the principal axes are computed from rows ``skip:`` (leave special tokens
    out); every row is projected. The result is rescaled to standard deviation ``scale``
    (close to a fresh Keras embedding's), so it drops into a small model without changing
    the scale its other layers expect. ``explained`` = share of the variance kept.
    """
    matrix = np.asarray(matrix, dtype="float64")
    if not 0 < dim <= matrix.shape[1]:
        raise ValueError(f"dim must be in 1..{matrix.shape[1]}, got {dim}.")
    regular = matrix[skip:]
    mean = regular.mean(axis=0)
    _, singular, axes = np.linalg.svd(regular - mean, full_matrices=False)
    projected = (matrix - mean) @ axes[:dim].T
    projected *= scale / projected[skip:].std()
    explained = float((singular[:dim] ** 2).sum() / (singular**2).sum())
    return projected.astype("float32"), explained


def nearest_tokens(embeddings, vocabulary, word, top=5):
    """The ``top`` tokens whose embedding rows have the highest cosine similarity to ``word``."""
    embeddings = np.asarray(embeddings, dtype="float64")
    index = list(vocabulary).index(word)
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    scores = unit @ unit[index]
    scores[index] = -np.inf
    return [vocabulary[i] for i in np.argsort(-scores)[:top]]


# --- the classifier -------------------------------------------------------------------------------
def build_elmo_classifier(backbone, num_classes=2, dropout=0.1, name="elmo_classifier"):
    """token ids (B, S) -> mean over real tokens of [token embedding ; backbone state]
    -> LayerNorm -> dropout -> Dense -> logits (B, num_classes).

    ``backbone`` is a ``backbones.LSTMBackbone`` (anything with ``token_embedding`` and a
    ``{"token_ids"}`` input). The token layer is fed to the head next to the contextual states,
    as ELMo does; the LayerNorm puts the pooled vector on a fixed scale, which a head trained
    on a few dozen examples needs (without it, small pooled values make the head learn slowly
    and early stopping keeps an almost untrained model).
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    states = sequence_output(backbone({"token_ids": token_ids}))
    tokens = backbone.token_embedding(token_ids)
    both = keras.layers.Concatenate(name="token_and_context")([tokens, states])
    pooled = MaskedMeanPooling(name="mean_pool")(both, ops.not_equal(token_ids, 0))
    pooled = keras.layers.LayerNormalization(name="pool_norm")(pooled)
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    logits = keras.layers.Dense(num_classes, name="head", dtype="float32")(pooled)
    return keras.Model({"token_ids": token_ids}, logits, name=name)


def encoder_features(classifier, x, batch_size=512):
    """The pooled vectors (before the LayerNorm and the head) of an ``build_elmo_classifier``
    model for token ids ``x``: (N, F) float32. With a frozen encoder they never change, so a
    sweep computes them once and trains only ``build_head`` on them."""
    pooled = keras.Model(classifier.input, classifier.get_layer("mean_pool").output)
    return pooled.predict(_as_inputs(x), batch_size=batch_size, verbose=0)


def build_head(feature_dim, num_classes=2, dropout=0.1, name="head_only"):
    """The head of ``build_elmo_classifier`` alone: features (B, F) -> LayerNorm -> dropout ->
    Dense -> logits. Trained on ``encoder_features`` it is the frozen-encoder classifier."""
    features = keras.Input(shape=(feature_dim,), name="features")
    x = keras.layers.LayerNormalization(name="pool_norm")(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="head", dtype="float32")(x)
    return keras.Model(features, logits, name=name)


# --- training many times --------------------------------------------------------------------------
class BudgetTrainer:
    """Fit one compiled classifier many times, each time from given starting weights.

    ``reset(weights)`` restores every variable of the model and its optimizer to their state at
    construction (``finetuning.ModelSnapshot``: dropout seed state and Adam moments included),
    then loads ``weights`` if given, so every run starts exactly like a fresh model and optimizer
    would -- without recompiling, which would retrace the graph (seconds per run).
    AdamW with a constant learning rate; early stopping on validation loss restores the best
    epoch.
    """

    def __init__(self, model, learning_rate=1e-3, weight_decay=0.01, jit_compile="auto"):
        self.model = compile_classifier(model, learning_rate, weight_decay, jit_compile)
        self.snapshot = ModelSnapshot(model)
        self.initial_weights = model.get_weights()

    def reset(self, weights=None):
        self.snapshot.restore()
        if weights is not None:
            self.model.set_weights(weights)

    def fit(self, x, y, validation, weights=None, max_epochs=30, patience=3, min_epoch_size=320,
            batch_size=32, seed=0):
        """Reset to ``weights`` (default: the weights the model had when compiled), then train.

        Returns the Keras History. ``x`` / ``validation[0]``: token-id arrays or input dicts.
        """
        num_classes = self.model.output.shape[-1]
        y = check_labels(y, num_classes, "training labels")
        x_val, y_val = validation
        y_val = check_labels(y_val, num_classes, "validation labels")
        self.reset(weights)
        x, y = repeat_to(self._inputs(x), y, min_epoch_size)
        keras.utils.set_random_seed(seed)
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                             restore_best_weights=True)
        return self.model.fit(x, y, validation_data=(self._inputs(x_val), y_val),
                              epochs=max_epochs, batch_size=batch_size, shuffle=True,
                              callbacks=[stop], verbose=0)

    def accuracy(self, x, y, batch_size=512):
        logits = self.model.predict(self._inputs(x), batch_size=batch_size, verbose=0)
        return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))

    def _inputs(self, x):
        # A token-id array for a model with a {"token_ids"} input; anything else as it is.
        return _as_inputs(x) if isinstance(self.model.input, dict) else x


@dataclasses.dataclass
class Arm:
    """One arm of a sweep: a trainer, the weights every run starts from (None: the trainer's
    initial weights) and, optionally, its own inputs for the pool, validation and test sets
    (e.g. precomputed encoder features; None means the sweep's token ids) and the budgets it
    runs (None: all of the sweep's)."""

    trainer: BudgetTrainer
    weights: Any = None
    pool: Any = None
    validation: Any = None
    test: Any = None
    sizes: Any = None


def sweep(arms, pool, validation, test, sizes, seeds, **fit_kwargs):
    """Train every arm on every budget and seed; returns a DataFrame, one row per run.

    arms: {name: Arm} -- e.g. one trainer started from pre-trained weights and one from random
    ones; an arm may bring its own inputs (``Arm.pool`` etc.) with the same rows and labels.
    pool: (x, y), the labeled pool; budgets are nested subsets of it (``budget_subsets``).
    sizes: list of budget sizes; seeds: a list, or a function size -> list of seeds (more
    seeds where the variance is high, i.e. at small budgets).
    Columns: arm, labels, fraction, seed, accuracy, epochs, seconds.
    """
    import pandas as pd

    x_pool, y_pool = pool
    rows = []
    for size in sizes:
        for seed in (seeds(size) if callable(seeds) else seeds):
            index = budget_subsets(y_pool, [size], seed=seed)[size]
            for name, arm in arms.items():
                if arm.sizes is not None and size not in arm.sizes:
                    continue
                x_arm = x_pool if arm.pool is None else arm.pool
                x_val = validation[0] if arm.validation is None else arm.validation
                x_test = test[0] if arm.test is None else arm.test
                start = time.perf_counter()
                history = arm.trainer.fit(_take(x_arm, index), np.asarray(y_pool)[index],
                                          (x_val, validation[1]), weights=arm.weights,
                                          seed=seed, **fit_kwargs)
                rows.append(dict(arm=name, labels=size, fraction=size / len(y_pool), seed=seed,
                                 accuracy=arm.trainer.accuracy(x_test, test[1]),
                                 epochs=len(history.epoch),
                                 seconds=time.perf_counter() - start))
    return pd.DataFrame(rows)


def budget_table(results, reference="scratch"):
    """Mean test accuracy per budget (rows) and arm (columns), the number of seeds, and each
    other arm's gap over ``reference`` (paired by seed, averaged)."""
    table = results.pivot_table(index="labels", columns="arm", values="accuracy", aggfunc="mean")
    table.columns.name = None
    table.insert(0, "seeds", results.groupby("labels").seed.nunique())
    for arm in results.arm.unique():
        if arm != reference:
            table[f"gap ({arm} - {reference})"] = paired_gap(results, arm, reference,
                                                             by_budget=True)
    return table


def paired_gap(results, arm, reference="scratch", labels=None, by_budget=False):
    """Mean of (arm accuracy - reference accuracy) over runs with the same budget and seed.

    ``labels``: restrict to these budgets. By budget, a Series; otherwise the mean over the
    chosen budgets of each budget's mean gap (every budget counts once, whatever its seeds).
    """
    wide = results.pivot_table(index=["labels", "seed"], columns="arm", values="accuracy")
    gap = (wide[arm] - wide[reference]).dropna()
    if labels is not None:
        gap = gap[gap.index.get_level_values("labels").isin(list(labels))]
    per_budget = gap.groupby(level="labels").mean()
    return per_budget if by_budget else float(per_budget.mean())


def plot_budget_curve(results, ax=None, title=None):
    """Test accuracy vs number of labels (log x): mean over seeds, with each run as a dot."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for arm, part in results.groupby("arm", sort=False):
        mean = part.groupby("labels").accuracy.mean()
        line, = ax.plot(mean.index, mean.values, marker="o", label=arm)
        ax.scatter(part.labels, part.accuracy, s=10, alpha=0.4, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("number of labeled training sentences (log scale)")
    ax.set_ylabel("test accuracy")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def _as_inputs(x):
    return x if isinstance(x, dict) else {"token_ids": np.asarray(x)}


def _take(x, index):
    return {k: np.asarray(v)[index] for k, v in x.items()} if isinstance(x, dict) else \
        np.asarray(x)[index]
