"""ptft_keras.evaluation: metrics match scikit-learn, errors are clear, plots and report work."""

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn import metrics as skm

from ptft_keras import evaluation as ev

TOL = 1e-12


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _binary_data(seed, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Scores rounded to one decimal: many ties, within and across classes.
    score = np.clip(np.round(0.3 * y + rng.uniform(0, 0.7, n), 1), 0, 1)
    return y, score


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    y, score = _binary_data(seed)
    threshold = [0.5, 0.3, 0.6, 0.5, 0.45][seed]
    got = ev.classification_metrics(y, score, threshold=threshold)
    pred = (score >= threshold).astype(int)
    p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    assert abs(got["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    assert abs(got["precision"] - p) < TOL
    assert abs(got["recall"] - r) < TOL
    assert abs(got["f1"] - f) < TOL
    np.testing.assert_array_equal(got["confusion_matrix"], skm.confusion_matrix(y, pred))
    np.testing.assert_array_equal(got["y_pred"], pred)
    assert abs(got["roc_auc"] - skm.roc_auc_score(y, score)) < TOL


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn_with_ties(seed):
    y, score = _binary_data(seed, n=50 + 40 * seed)
    fpr, tpr, thresholds = ev.roc_curve(y, score)
    s_fpr, s_tpr, s_thr = skm.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, s_fpr, rtol=0, atol=TOL)
    np.testing.assert_allclose(tpr, s_tpr, rtol=0, atol=TOL)
    np.testing.assert_array_equal(thresholds, s_thr)
    assert len(np.unique(score)) + 1 == len(fpr)  # one point per distinct score, plus (0, 0)


def test_auc_with_all_scores_tied_is_one_half():
    assert ev.roc_auc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == 0.5


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_metrics_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    k, n = 3 + seed, 150
    y = rng.integers(0, k, n)
    logits = rng.integers(-2, 3, (n, k)).astype(float)  # integer logits: argmax ties occur
    logits[np.arange(n), y] += rng.integers(0, 3, n)
    got = ev.classification_metrics(y, logits)
    pred = logits.argmax(axis=1)
    p, r, f, _ = skm.precision_recall_fscore_support(
        y, pred, labels=list(range(k)), average="macro", zero_division=0
    )
    assert abs(got["accuracy"] - skm.accuracy_score(y, pred)) < TOL
    assert abs(got["precision"] - p) < TOL
    assert abs(got["recall"] - r) < TOL
    assert abs(got["f1"] - f) < TOL
    np.testing.assert_array_equal(
        got["confusion_matrix"], skm.confusion_matrix(y, pred, labels=list(range(k)))
    )
    assert "roc_auc" not in got


def test_class_never_predicted_scores_zero_like_sklearn():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.eye(3)[[0, 0, 2, 2, 0, 0]]  # class 1 never predicted: precision 0/0 -> 0
    got = ev.classification_metrics(y, probs)
    p, r, f, _ = skm.precision_recall_fscore_support(y, [0, 0, 2, 2, 0, 0], average="macro",
                                                     zero_division=0)
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f), abs=TOL)


def test_two_column_scores_one_hot_labels_and_named_labels():
    y, score = _binary_data(7)
    expected = ev.classification_metrics(y, score)
    two_columns = np.stack([1 - score, score], axis=1)
    one_hot = np.eye(2)[y]
    got = ev.classification_metrics(one_hot, two_columns)
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert got[key] == pytest.approx(expected[key], abs=TOL)
    # Two logits per example: softmax column 1 >= 0.5 exactly when logit 1 >= logit 0.
    logits = np.log(np.clip(two_columns, 1e-9, 1)) + 3.0
    assert ev.classification_metrics(y, logits)["roc_auc"] == pytest.approx(expected["roc_auc"])
    named = ev.classification_metrics(np.where(y == 1, "pos", "neg"), score, labels=["neg", "pos"])
    assert named["f1"] == pytest.approx(expected["f1"], abs=TOL)
    assert set(named["y_pred"]) <= {"neg", "pos"}


@pytest.mark.parametrize(
    "y_true, y_score, kwargs, message",
    [
        ([], [], {}, "y_true is empty"),
        ([0, 1], [], {}, "y_score is empty"),
        ([0, 1, 1], [0.2, 0.7], {}, "3 labels but y_score has 2 rows"),
        ([0, 1, 2], [0.2, 0.7, 0.4], {}, "not in the label set"),
        ([0, 1, 5], np.full((3, 3), 1 / 3), {}, "[5]"),
        ([0, 1], [0.2, np.nan], {}, "NaN"),
        ([0, 1], [[0.2, 0.5, 0.3], [np.nan, 0, 1]], {}, "first at index 1"),
        ([1, 1, 1], [0.2, 0.7, 0.9], {}, "only class 1"),
        ([0, 1], [-2.0, 3.0], {}, "look like logits"),
        ([0, 1], [0.2, 0.7], {"labels": [0, 1, 2]}, "labels has 3 entries"),
    ],
)
def test_errors_say_what_is_wrong(y_true, y_score, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ev.classification_metrics(y_true, y_score, **kwargs)


def test_single_class_is_fine_without_auc_and_an_error_for_roc_curve():
    got = ev.classification_metrics([0, 0, 0], [0.1, 0.7, 0.2], auc=False)
    assert got["accuracy"] == pytest.approx(2 / 3) and "roc_auc" not in got
    with pytest.raises(ValueError, match="undefined"):
        ev.roc_curve([0, 0, 0], [0.1, 0.7, 0.2])


def test_plot_history_one_subplot_per_metric():
    logs = {"loss": [1.0, 0.7, 0.5], "accuracy": [0.5, 0.7, 0.8], "auc": [0.6, 0.7, 0.8],
            "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.5, 0.6, 0.7]}
    fig = ev.plot_history(logs)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "auc"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 2, 1]

    class History:  # what keras' fit returns, as far as plot_history cares
        history = {"loss": [1.0, 0.5]}

    fig, ax = plt.subplots()
    assert ev.plot_history(History(), ax=ax) is fig
    with pytest.raises(ValueError, match="3 metrics"):
        ev.plot_history(logs, ax=ax)


def test_plot_confusion_matrix_annotates_counts():
    cm = np.array([[5, 1], [2, 7]])
    fig = ev.plot_confusion_matrix(cm, ["neg", "pos"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == ["1", "2", "5", "7"]
    with pytest.raises(ValueError, match="square"):
        ev.plot_confusion_matrix(cm, ["a", "b", "c"])


def test_plot_roc_several_curves_on_one_axis():
    y, score = _binary_data(3)
    fig = ev.plot_roc(y, score, label="a")
    ax = fig.axes[0]
    ev.plot_roc(y, 1 - score, label="b", ax=ax)
    assert len(ax.get_lines()) == 3  # chance diagonal once + two curves
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    auc = skm.roc_auc_score(y, score)
    assert f"a (AUC = {auc:.3f})" in legend and any(t.startswith("b (AUC") for t in legend)


def test_results_table_orders_columns_and_drops_arrays():
    rows = [
        {"params": 1000, "model": "small", "f1": 0.8, "roc_auc": 0.9, "accuracy": 0.85,
         "confusion_matrix": np.eye(2), "train_s": 3.2, "note": "frozen"},
        {"model": "big", "accuracy": 0.9, "f1": 0.88, "auc": 0.95, "train_s": 10.0, "params": 9e6},
    ]
    table = ev.results_table(rows)
    assert list(table.columns) == ["model", "accuracy", "f1", "auc", "train_s", "params", "note"]
    assert table["auc"].tolist() == [0.9, 0.95]


def test_report_on_a_tiny_keras_model(capsys):
    keras = pytest.importorskip("keras")
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] + 0.3 * rng.normal(size=64) > 0).astype("int64")
    keras.utils.set_random_seed(0)
    # A linear layer without activation: its outputs are logits, which report must detect.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.layers[0].set_weights([np.array([[3.0], [0], [0], [0]], "float32"), np.zeros(1, "float32")])

    result = ev.report(model, (x, y), ["neg", "pos"], name="linear")
    printed = capsys.readouterr().out
    assert "linear" in printed and "accuracy" in printed
    assert result["n"] == 64 and result["y_prob"].shape == (64,)
    assert np.all((result["y_prob"] > 0) & (result["y_prob"] < 1))  # sigmoid was applied
    assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(y, x[:, 0]), abs=TOL)
    assert len(result["figure"].axes) == 3  # confusion matrix, its colorbar, ROC

    # Same numbers from a batched dataset; softmax outputs go the multi-class way.
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    again = ev.report(model, ds, ["neg", "pos"], plots=False)
    assert again["accuracy"] == result["accuracy"] and again["figure"] is None
    softmax = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    three = ev.report(softmax, (x, y), ["a", "b", "c"], plots=True)
    assert three["confusion_matrix"].shape == (3, 3) and "roc_auc" not in three
    assert len(three["figure"].axes) == 2
    with pytest.raises(ValueError, match="2 class_names"):
        ev.report(softmax, (x, y), ["a", "b"])
