"""Evaluation for the course's classifiers: metrics, ROC curves, plots and one-call reports.

The metrics are written in plain NumPy (the tests check them against scikit-learn) so that a
learner can read exactly how accuracy, F1, the confusion matrix and ROC AUC are computed.

Conventions used throughout:

* ``y_true``: shape ``(n,)`` class labels (one-hot ``(n, k)`` is also accepted).
* ``y_score``: binary -> shape ``(n,)`` probability of the positive class;
  multi-class -> shape ``(n, k)`` probabilities or logits (the prediction is the argmax).
  ``(n, 2)`` is read as binary, with column 1 as the positive class.
* Confusion matrices have rows = true class, columns = predicted class.

matplotlib and pandas are imported inside the functions that need them, so importing this
module stays cheap.
"""

import numpy as np

RESULT_COLUMNS = ("model", "accuracy", "f1", "auc", "train_s", "params")


# --------------------------------------------------------------------------- input checks


def _as_array(values, name):
    array = np.asarray(values)
    if array.size == 0:
        raise ValueError(f"{name} is empty: pass at least one example.")
    return array


def _true_labels(y_true):
    y_true = _as_array(y_true, "y_true")
    if y_true.ndim == 2 and y_true.shape[1] > 1:  # one-hot, as Keras losses often want
        return y_true.argmax(axis=1)
    return y_true.reshape(-1) if y_true.ndim == 2 else y_true


def _check_scores(y_score, n_true):
    y_score = _as_array(y_score, "y_score")
    if y_score.ndim == 2 and y_score.shape[1] == 1:
        y_score = y_score[:, 0]
    if y_score.ndim not in (1, 2):
        raise ValueError(f"y_score has shape {y_score.shape}: expected (n,) or (n, k).")
    if len(y_score) != n_true:
        raise ValueError(
            f"y_true has {n_true} labels but y_score has {len(y_score)} rows: they must describe "
            f"the same examples (did a dataset get batched, truncated or shuffled separately?)."
        )
    y_score = y_score.astype(np.float64)
    bad = np.flatnonzero(np.isnan(y_score).reshape(len(y_score), -1).any(axis=1))
    if bad.size:
        raise ValueError(
            f"y_score contains NaN for {bad.size} example(s) (first at index {bad[0]}): the model "
            f"produced NaN, usually a diverged training run (NaN loss) or NaN inputs."
        )
    return y_score


def _encode(y_true, labels):
    """Map label values to column indices 0..k-1; raise if one is not in ``labels``."""
    lookup = {value: i for i, value in enumerate(labels)}
    try:
        return np.array([lookup[value] for value in y_true.tolist()], dtype=np.int64)
    except KeyError:
        outside = sorted({v for v in y_true.tolist() if v not in lookup}, key=str)
        raise ValueError(
            f"y_true contains {outside[:5]} which {'is' if len(outside) == 1 else 'are'} not in "
            f"the label set {list(labels)}: pass labels=[...] listing every class in score-column "
            f"order, or fix the labels (e.g. map {{-1, 1}} to {{0, 1}})."
        ) from None


def _looks_like_probabilities(scores):
    rows_sum_to_one = scores.ndim == 1 or np.allclose(scores.sum(axis=1), 1.0, atol=1e-3)
    return bool(np.all((scores >= 0) & (scores <= 1)) and rows_sum_to_one)


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)  # avoids overflow in exp
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


# --------------------------------------------------------------------------- metrics


def confusion_matrix(y_true, y_pred, num_classes):
    """Counts, shape (k, k): entry [i, j] = examples of true class i predicted as class j.

    ``y_true`` and ``y_pred`` are integer class indices of shape (n,).
    """
    flat = np.asarray(y_true, np.int64) * num_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def roc_curve(y_true, y_score):
    """ROC curve of a binary problem: y_true (n,) in {0, 1}, y_score (n,) any real scores.

    Returns ``(fpr, tpr, thresholds)``, each of shape (m + 1,) for m distinct scores: point i
    counts every example with score >= thresholds[i] as positive. The first point is (0, 0) with
    threshold +inf (nothing predicted positive). Tied scores form a single point, which is what
    makes the curve -- and the AUC -- independent of the order of tied examples.
    """
    y_true = _true_labels(y_true)
    y_score = _check_scores(y_score, len(y_true))
    if y_score.ndim != 1:
        raise ValueError(f"roc_curve needs one score per example, got shape {y_score.shape}.")
    positive = _encode(y_true, (0, 1)).astype(bool)
    n_pos = int(positive.sum())
    if n_pos in (0, len(positive)):
        only = 1 if n_pos else 0
        raise ValueError(
            f"ROC AUC is undefined: y_true holds only class {only}, so the "
            f"{'false' if only else 'true'} positive rate divides by zero. Evaluate on data that "
            f"contains both classes (a larger or stratified split)."
        )
    order = np.argsort(-y_score, kind="mergesort")
    scores, hits = y_score[order], positive[order]
    # The last index of each run of equal scores: thresholds sit between distinct values only.
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(hits)[last_of_run]
    fps = (last_of_run + 1) - tps
    fpr = np.r_[0.0, fps / (len(positive) - n_pos)]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, scores[last_of_run]]


def roc_auc(y_true, y_score):
    """Area under the ROC curve (trapezoid rule); y_true (n,) in {0, 1}, y_score (n,)."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(np.trapezoid(tpr, fpr))


def _precision_recall_f1(cm):
    """Per-class precision, recall, F1 from a confusion matrix; 0 where undefined (0 / 0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1


def classification_metrics(y_true, y_score, threshold=0.5, labels=None, auc=True):
    """Accuracy, precision, recall, F1, confusion matrix and (binary) ROC AUC.

    y_true: (n,) labels, or (n, k) one-hot.
    y_score: (n,) probability of the positive class (binary), or (n, k) probabilities or logits.
    threshold: binary only; an example is predicted positive when its probability >= threshold.
    labels: the class values as they appear in y_true, in score-column order (binary: the
        negative then the positive class). Default: 0..k-1.
    auc: compute ``roc_auc`` for binary problems (needs both classes present in y_true).

    Returns a dict: accuracy, precision, recall, f1 (binary: of the positive class; multi-class:
    macro average over classes), confusion_matrix (k, k) with rows = true class, labels, y_pred
    (n,) predicted labels, and roc_auc (binary only).
    """
    y_true = _true_labels(y_true)
    y_score = _check_scores(y_score, len(y_true))
    if y_score.ndim == 2 and y_score.shape[1] == 2:  # softmax over {negative, positive}
        probs = y_score if _looks_like_probabilities(y_score) else _softmax(y_score)
        y_score = probs[:, 1]
    binary = y_score.ndim == 1
    k = 2 if binary else y_score.shape[1]
    labels = list(range(k)) if labels is None else list(labels)
    if len(labels) != k:
        raise ValueError(
            f"labels has {len(labels)} entries but the scores describe {k} classes: give one "
            f"label per score column{' (negative, positive)' if binary else ''}."
        )
    true_idx = _encode(y_true, labels)

    if binary:
        if not _looks_like_probabilities(y_score):
            raise ValueError(
                f"binary y_score must be probabilities in [0, 1], got values from "
                f"{y_score.min():.3g} to {y_score.max():.3g}: these look like logits; apply a "
                f"sigmoid first (keras.ops.sigmoid) or use report(..., from_logits=True)."
            )
        pred_idx = (y_score >= threshold).astype(np.int64)
    else:
        pred_idx = y_score.argmax(axis=1)

    cm = confusion_matrix(true_idx, pred_idx, k)
    precision, recall, f1 = _precision_recall_f1(cm)

    def pick(per_class):  # binary: the positive class; multi-class: the macro average
        return float(per_class[1] if binary else per_class.mean())

    result = {
        "accuracy": float(np.mean(true_idx == pred_idx)),
        "precision": pick(precision),
        "recall": pick(recall),
        "f1": pick(f1),
        "confusion_matrix": cm,
        "labels": labels,
        "y_pred": np.asarray(labels)[pred_idx],
    }
    if binary and auc:
        result["roc_auc"] = roc_auc(true_idx, y_score)
    return result


# --------------------------------------------------------------------------- plots


def _axes(ax, figsize=(5, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_history(history, ax=None):
    """Training curves: one subplot per metric, training and ``val_`` curves together.

    history: a keras ``History`` (what ``fit`` returns) or its ``.history`` dict
    {name: [value per epoch]}. ax: optional Axes, or a sequence of them, one per metric.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    logs = getattr(history, "history", history)
    if not logs:
        raise ValueError("history is empty: pass what model.fit(...) returned, after training.")
    names = [key for key in logs if not key.startswith("val_")]
    names += [key[4:] for key in logs if key.startswith("val_") and key[4:] not in logs]
    names.sort(key=lambda key: key != "loss")  # loss first, the rest in Keras' order
    if ax is None:
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
        axes = axes.ravel()
    else:
        axes = np.atleast_1d(ax).ravel()
        if len(axes) < len(names):
            raise ValueError(f"history has {len(names)} metrics {names}: pass that many axes.")
        fig = axes[0].figure
    for axis, name in zip(axes, names):
        for key, style in ((name, "-o"), ("val_" + name, "--o")):
            if key in logs:
                values = np.asarray(logs[key], dtype=float)
                axis.plot(np.arange(1, len(values) + 1), values, style, ms=3, label=key)
        axis.set(title=name, xlabel="epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5"
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, class_names, ax=None):
    """Heat map of a (k, k) confusion matrix (rows = true class) with the counts written in.

    Returns the Figure.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(
            f"cm has shape {cm.shape} but there are {len(class_names)} class names: expected a "
            f"square ({len(class_names)}, {len(class_names)}) matrix."
        )
    fig, ax = _axes(ax, figsize=(1.2 * len(cm) + 2.5, 1.1 * len(cm) + 2))
    image = ax.imshow(cm, cmap="Blues")
    # Dark cells get white text so the count stays readable.
    dark = cm > (cm.max() / 2 if cm.max() else 1)
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, f"{count:g}", ha="center", va="center", color="white" if dark[i, j] else "black")
    ticks = np.arange(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def plot_roc(y_true, y_score, label=None, ax=None):
    """ROC curve with its AUC in the legend; call again with the same ``ax`` to compare models.

    y_true (n,) in {0, 1}, y_score (n,) scores. Returns the Figure.
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    area = float(np.trapezoid(tpr, fpr))
    fig, ax = _axes(ax, figsize=(4.5, 4.2))
    # The chance diagonal is drawn once per axis, however many curves are added.
    if not any(line.get_gid() == "chance" for line in ax.get_lines()):
        ax.plot([0, 1], [0, 1], ":", color="gray", gid="chance", label="chance (AUC = 0.5)")
    ax.plot(fpr, tpr, label=f"{label or 'model'} (AUC = {area:.3f})")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve",
           xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.legend(loc="lower right")
    return fig


# --------------------------------------------------------------------------- reports


def _predict(model, data):
    """Labels (n, ...) and model outputs (n, ...) from (x, y) arrays or a dataset of batches."""
    if isinstance(data, tuple) and len(data) in (2, 3):
        x, y = data[0], data[1]
        return np.asarray(y), np.asarray(model.predict(x, verbose=0))
    ys, outputs = [], []
    # One pass over the data: a dataset that reshuffles would misalign two separate passes.
    for batch in data:
        x, y = batch[0], batch[1]
        outputs.append(np.asarray(model.predict_on_batch(x)))
        ys.append(np.asarray(y))
    if not ys:
        raise ValueError("the dataset yielded no batches: nothing to evaluate.")
    return np.concatenate(ys), np.concatenate(outputs)


def report(model, dataset_or_xy, class_names, name="model", plots=True, from_logits=None,
           threshold=0.5):
    """Predict, compute :func:`classification_metrics`, print a one-row table, plot.

    dataset_or_xy: ``(x, y)`` arrays or a ``tf.data.Dataset`` (or any iterable) of ``(x, y)``
    batches. The model outputs (n,) / (n, 1) for binary or (n, k) for k classes, as
    probabilities or logits; ``from_logits=None`` guesses (logits if any value is outside
    [0, 1], or multi-class rows do not sum to 1).
    plots: draw the confusion matrix and (binary) the ROC curve side by side.

    Returns the metrics dict plus ``model`` (the name), ``n``, ``y_true``, ``y_prob`` (the
    predicted probabilities) and ``figure`` (None without plots).
    """
    y_true, outputs = _predict(model, dataset_or_xy)
    outputs = outputs.astype(np.float64)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if from_logits is None:
        from_logits = not _looks_like_probabilities(outputs)
    if from_logits:
        outputs = _sigmoid(outputs) if outputs.ndim == 1 else _softmax(outputs)
    k = outputs.shape[1] if outputs.ndim == 2 else 2
    if len(class_names) != k:
        raise ValueError(
            f"the model scores {k} classes but {len(class_names)} class_names were given: pass "
            f"one name per class, in the order of the labels 0..{k - 1}."
        )
    metrics = classification_metrics(y_true, outputs, threshold=threshold)
    result = {"model": name, "n": len(outputs), **metrics, "y_true": y_true, "y_prob": outputs}

    import pandas as pd

    row = {key: result[key] for key in ("model", "n", "accuracy", "precision", "recall", "f1")}
    if "roc_auc" in result:
        row["auc"] = result["roc_auc"]
    print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))

    result["figure"] = None
    if plots:
        import matplotlib.pyplot as plt

        binary = "roc_auc" in result
        fig, axes = plt.subplots(1, 2 if binary else 1, figsize=(10 if binary else 5.5, 4.2),
                                 squeeze=False)
        plot_confusion_matrix(result["confusion_matrix"], class_names, ax=axes[0, 0])
        if binary:
            positive = _encode(_true_labels(y_true), metrics["labels"])
            scores = outputs if outputs.ndim == 1 else outputs[:, 1]
            plot_roc(positive, scores, label=name, ax=axes[0, 1])
        fig.suptitle(f"{name} (n = {result['n']})")
        fig.tight_layout()
        result["figure"] = fig
    return result


def results_table(rows):
    """List of result dicts -> pandas DataFrame, one row per model.

    Columns come in a fixed order (model, accuracy, f1, auc, train_s, params, then any others in
    first-seen order). ``roc_auc`` is shown as ``auc``; arrays, lists and figures (as found in a
    :func:`report` result) are left out, so report() results can be passed directly.
    """
    import pandas as pd

    cleaned = []
    for row in rows:
        row = dict(row)
        if "roc_auc" in row:
            row.setdefault("auc", row.pop("roc_auc"))
        cleaned.append({key: value for key, value in row.items()
                        if value is None or np.ndim(value) == 0 and not hasattr(value, "savefig")})
    seen = [key for row in cleaned for key in row]
    columns = [c for c in RESULT_COLUMNS if c in seen]
    columns += [c for c in dict.fromkeys(seen) if c not in columns]
    return pd.DataFrame(cleaned, columns=columns)
