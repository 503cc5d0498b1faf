"""Multi-task learning: one shared backbone, one head per task (chapter 4.1).

``build_multitask_model`` is a Functional multi-output model: the backbone's inputs -> pooled
features (B, H) -> one head per task -> ``{task: output}`` (a multi-output model needs the
Functional API: a ``Sequential`` model has exactly one output).

    tasks = {"sentiment": {"type": "classification", "num_classes": 2},
             "domain":    {"type": "classification", "num_classes": 4},
             "rating":    {"type": "regression"}}

Classification heads return logits (B, C); regression heads return (B, 1).

Missing labels. When tasks come from different datasets, a row has labels for some tasks only.
``task_arrays`` turns such a DataFrame (NaN, None or -1 where a label is missing) into
``(x, y, sample_weight)``: for each task a label array and a 0/1 weight array; a missing label gets
weight 0 and a placeholder value that the loss multiplies by 0 (no label is made up). Each task's
loss is the mean over its *labelled* rows of the batch (reduction ``mean_with_sample_weight``),
and a task with no labels in a batch contributes exactly 0 loss and 0 gradient.

Weighting the task losses, L = sum_i w_i L_i:

- static: ``compile_multitask(..., loss_weights={...})`` (Keras ``loss_weights``);
- staged ("hierarchical optimization"): ``staged_training`` trains the shared layers together
  with the heads, then freezes the shared layers and keeps training the heads (the heads learn
  in both stages);
- adaptive: ``MultiTaskTrainer(model, tasks, weighting="uncertainty")`` learns one log-variance
  per task (Kendall, Gal & Cipolla 2018); ``DynamicWeightAveraging`` (Liu, Johns & Davison 2019)
  re-weights tasks every epoch by how fast their losses fall.

Unequal dataset sizes: ``TaskSampler`` draws every batch from one task, task i with probability
p_i ∝ n_i^(1/T) (T=1 proportional, T -> inf uniform).
"""

import math

import keras
import numpy as np
import pandas as pd
from keras import ops

from ptft_keras.data.datasets import EpochDataset
from ptft_keras.models.classifier import backbone_inputs, pooled_features

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASK_TYPES = (CLASSIFICATION, REGRESSION)


# --- task specifications -------------------------------------------------------------------------
def check_tasks(tasks):
    """Validate a task dict and return a normalised copy ({name: {"type", "num_classes"?, ...}})."""
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError("tasks must be a non-empty dict {task name: {'type': ...}}.")
    checked = {}
    for name, spec in tasks.items():
        spec = dict(spec)
        kind = spec.get("type")
        if kind not in TASK_TYPES:
            raise ValueError(f"Task {name!r}: type must be one of {TASK_TYPES}, got {kind!r}.")
        if kind == CLASSIFICATION:
            classes = spec.get("classes")
            num_classes = spec.get("num_classes", len(classes) if classes else None)
            if not num_classes or int(num_classes) < 2:
                raise ValueError(
                    f"Task {name!r}: a classification task needs num_classes >= 2 (two-class "
                    f"tasks use a 2-way softmax), got {num_classes!r}."
                )
            if classes is not None and len(classes) != int(num_classes):
                raise ValueError(
                    f"Task {name!r}: {len(classes)} classes but num_classes={num_classes}."
                )
            spec["num_classes"] = int(num_classes)
        checked[name] = spec
    return checked


# --- model ---------------------------------------------------------------------------------------
def task_head(features, name, spec, head_units=0, dropout=0.1):
    """One task's head on (B, H) features: logits (B, C) or a regression value (B, 1)."""
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(features)
    if head_units:
        x = keras.layers.Dense(head_units, activation="gelu", name=f"{name}_hidden")(x)
    units = spec["num_classes"] if spec["type"] == CLASSIFICATION else 1
    # float32 outputs even under mixed precision: softmax and MSE need the range. The layer is
    # named after the task, so the model's output dict, losses and logs use the task names.
    return keras.layers.Dense(units, dtype="float32", name=name)(x)


def build_multitask_model(backbone, tasks, pooling="mean", head_units=0, dropout=0.1,
                          name="multitask"):
    """Shared backbone + one head per task, as a Functional multi-output model.

    Inputs: the backbone's dict (ours: ``token_ids`` (B, S); keras-hub BERT: ``token_ids``,
    ``segment_ids``, ``padding_mask``). Outputs: ``{task: logits (B, C) or value (B, 1)}``.
    ``head_units > 0`` gives each task a hidden layer of its own before its output layer.
    """
    tasks = check_tasks(tasks)
    inputs = backbone_inputs(backbone)
    features = pooled_features(backbone, inputs, pooling)
    outputs = {
        task: task_head(features, task, spec, head_units, dropout) for task, spec in tasks.items()
    }
    return keras.Model(inputs, outputs, name=name)


def head_layers(model, tasks):
    """The layers that belong to the task heads (everything named ``<task>`` or ``<task>_*``)."""
    return [
        layer for layer in model.layers
        if any(layer.name == t or layer.name.startswith(f"{t}_") for t in tasks)
    ]


# --- data with missing labels --------------------------------------------------------------------
def _label_column(frame, task, spec):
    """(labels, weights) for one task; weight 0 where the label is missing."""
    column = spec.get("column", task)
    n = len(frame)
    if column not in frame.columns:  # this dataset has no labels for the task at all
        placeholder = np.zeros(n, "int32" if spec["type"] == CLASSIFICATION else "float32")
        return placeholder, np.zeros(n, "float32")
    values = frame[column]
    missing = values.isna().to_numpy()
    if spec["type"] == REGRESSION:
        labels = pd.to_numeric(values, errors="raise").to_numpy(dtype="float32")
        labels = np.where(missing, 0.0, labels).astype("float32")
        return labels, (~missing).astype("float32")
    classes = spec.get("classes")
    if classes is not None and values[~missing].map(lambda v: isinstance(v, str)).any():
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(values[~missing]) - set(index))
        if unknown:
            raise ValueError(f"Task {task!r}: labels {unknown[:5]} are not in classes {classes}.")
        values = values.map(index)
    try:
        numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype="float64")
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"Task {task!r}: column {column!r} holds non-numeric labels ({err}); list them in "
            f"the task's 'classes' (e.g. {{'type': 'classification', 'classes': [...]}})."
        ) from err
    missing = missing | (numbers < 0)  # -1 is the usual "no label" marker
    present = numbers[~missing]
    if np.any(np.mod(present, 1) != 0) or np.any(present >= spec["num_classes"]):
        bad = sorted(set(present[(np.mod(present, 1) != 0) | (present >= spec["num_classes"])]))
        raise ValueError(
            f"Task {task!r}: labels {bad[:5]} are not class ids 0..{spec['num_classes'] - 1}."
        )
    labels = np.where(missing, 0, numbers).astype("int32")
    return labels, (~missing).astype("float32")


def task_arrays(frame, tasks, x):
    """(x, y, sample_weight) for ``fit`` from a DataFrame whose label columns may be missing.

    frame: one row per example; task t's labels are in column ``tasks[t].get("column", t)``.
    A label that is NaN/None, negative (-1), or whose column is absent counts as missing.
    Classification labels are ids 0..C-1, or strings if the task lists ``classes``.
    x: the model inputs for the rows (dict of arrays, or a token-id array (N, S)), or a function
    ``texts -> inputs`` applied to ``frame["text"]``.
    Returns x (dict), y = {task: (N,)}, sample_weight = {task: (N,) of 0/1}.
    """
    tasks = check_tasks(tasks)
    if callable(x):
        x = x(frame["text"].tolist())
    x = x if isinstance(x, dict) else {"token_ids": np.asarray(x)}
    rows = {len(v) for v in x.values()}
    if rows != {len(frame)}:
        raise ValueError(f"The inputs have {sorted(rows)} rows but the frame has {len(frame)}.")
    y, sample_weight = {}, {}
    for task, spec in tasks.items():
        y[task], sample_weight[task] = _label_column(frame, task, spec)
    return x, y, sample_weight


def labelled_counts(sample_weight):
    """{task: number of labelled rows}: check that every task has data before training."""
    return {task: int(np.sum(w > 0)) for task, w in sample_weight.items()}


def subset(arrays, rows):
    """Rows of (x, y, sample_weight) (each a dict of arrays), e.g. one task's labelled rows."""
    return tuple({k: np.asarray(v)[rows] for k, v in part.items()} for part in arrays)


# --- losses, metrics, compile --------------------------------------------------------------------
def task_loss(spec):
    """Per-task loss. ``mean_with_sample_weight``: average over the labelled rows of the batch
    (0 when none is labelled), so a task's loss does not shrink with the share of its rows."""
    if spec["type"] == CLASSIFICATION:
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )
    return keras.losses.MeanSquaredError(reduction="mean_with_sample_weight")


def task_metric(spec):
    if spec["type"] == CLASSIFICATION:
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return keras.metrics.MeanAbsoluteError(name="mae")


def compile_multitask(model, tasks, loss_weights=None, learning_rate=1e-3, optimizer=None,
                      jit_compile="auto", run_eagerly=False):
    """Compile a multi-output model: one masked loss per task, static ``loss_weights``.

    Metrics are *weighted* metrics, so rows with a missing label (weight 0) are not counted.
    Logs: ``loss`` (weighted sum), ``<task>_loss`` (unweighted), ``<task>_accuracy`` / ``_mae``.
    """
    tasks = check_tasks(tasks)
    model.compile(
        optimizer=optimizer or keras.optimizers.AdamW(learning_rate=learning_rate),
        loss={t: task_loss(spec) for t, spec in tasks.items()},
        loss_weights=None if loss_weights is None else {t: float(loss_weights[t]) for t in tasks},
        weighted_metrics={t: [task_metric(spec)] for t, spec in tasks.items()},
        jit_compile=jit_compile,
        run_eagerly=run_eagerly,
    )
    return model


# --- adaptive weighting --------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="ptft_keras")
class UncertaintyWeighting(keras.layers.Layer):
    """Kendall, Gal & Cipolla (2018): combine task losses with learned uncertainties.

    Inputs: task losses (K,) and ``present`` (K,) (1 if the batch has labels for the task).
    Output: the scalar  sum_i present_i * (c_i * exp(-s_i) * L_i + r_i * s_i),  s_i = log sigma_i^2
    trainable (initialised to 0, i.e. weight 1).

    form="simple" (default): c_i = r_i = 1 for every task, the form most implementations use.
    At the optimum exp(-s_i) = 1 / L_i: noisy (high-loss) tasks get down-weighted, and the
    ``+ s_i`` term stops the trivial answer s_i -> inf.
    form="kendall": the paper's likelihoods: regression (Gaussian) c = r = 1/2; classification
    (softmax with temperature, its approximation) c = 1, r = 1/2.
    A task absent from a batch adds nothing, not even its ``r_i * s_i`` term: otherwise its
    log-variance would drift down on every batch that lacks it (e.g. under task sampling).
    """

    def __init__(self, task_types, form="simple", **kwargs):
        super().__init__(**kwargs)
        if form not in ("simple", "kendall"):
            raise ValueError(f"form must be 'simple' or 'kendall', got {form!r}.")
        self.task_types = list(task_types)
        self.form = form
        if form == "simple":
            scale, reg = [1.0] * len(self.task_types), [1.0] * len(self.task_types)
        else:
            scale = [0.5 if t == REGRESSION else 1.0 for t in self.task_types]
            reg = [0.5] * len(self.task_types)
        self._scale, self._reg = scale, reg
        self.log_variances = self.add_weight(
            shape=(len(self.task_types),), initializer="zeros", name="log_variances"
        )
        self.built = True  # the only state is created above; nothing depends on input shapes

    def weights_now(self):
        """Effective multipliers c_i * exp(-s_i) of the task losses, (K,)."""
        return ops.convert_to_tensor(self._scale) * ops.exp(-self.log_variances)

    def call(self, losses, present):
        s = ops.cast(self.log_variances, losses.dtype)
        terms = ops.convert_to_tensor(self._scale) * ops.exp(-s) * losses
        terms = terms + ops.convert_to_tensor(self._reg) * s
        return ops.sum(present * terms)

    def get_config(self):
        config = super().get_config()
        config.update(task_types=self.task_types, form=self.form)
        return config


@keras.saving.register_keras_serializable(package="ptft_keras")
class MultiTaskTrainer(keras.Model):
    """Wraps a multi-output model and combines its task losses with weights that can change.

    loss = sum_i w_i L_i ("fixed"; ``task_weights`` is a non-trainable variable that
    ``DynamicWeightAveraging`` rewrites each epoch) or the ``UncertaintyWeighting`` sum
    ("uncertainty"; learned log-variances, also multiplied by ``task_weights``).
    Each L_i is the task's masked mean loss (see ``task_loss``). Logs ``<task>_loss`` (averaged
    over the batches that had labels for the task) next to ``loss``.
    Calling it calls the wrapped model: inputs dict -> {task: output}.
    """

    def __init__(self, model, tasks, weighting="fixed", loss_weights=None,
                 uncertainty_form="simple", **kwargs):
        super().__init__(**kwargs)
        if weighting not in ("fixed", "uncertainty"):
            raise ValueError(f"weighting must be 'fixed' or 'uncertainty', got {weighting!r}.")
        self.model = model
        self.tasks = check_tasks(tasks)
        self.task_names = list(self.tasks)
        self.weighting = weighting
        self.uncertainty_form = uncertainty_form
        initial = [float((loss_weights or {}).get(t, 1.0)) for t in self.task_names]
        self.initial_weights = dict(zip(self.task_names, initial))
        self.task_weights = self.add_weight(
            shape=(len(initial),), initializer=keras.initializers.Constant(initial),
            trainable=False, name="task_weights",
        )
        self.uncertainty = None
        if weighting == "uncertainty":
            self.uncertainty = UncertaintyWeighting(
                [self.tasks[t]["type"] for t in self.task_names], form=uncertainty_form,
                name="uncertainty_weighting",
            )
        self.task_losses = [task_loss(self.tasks[t]) for t in self.task_names]
        self.loss_trackers = [keras.metrics.Mean(name=f"{t}_loss") for t in self.task_names]
        self.built = True  # the wrapped model is built; the weights above need no input shape

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, present = [], []
        for task, loss_fn in zip(self.task_names, self.task_losses):
            weight = None if sample_weight is None else sample_weight[task]
            losses.append(ops.cast(loss_fn(y[task], y_pred[task], weight), "float32"))
            has_labels = 1.0 if weight is None else ops.cast(ops.sum(weight) > 0, "float32")
            present.append(ops.convert_to_tensor(has_labels, "float32"))
        losses, present = ops.stack(losses), ops.stack(present)
        for i, tracker in enumerate(self.loss_trackers):
            tracker.update_state(losses[i], sample_weight=present[i])
        weights = ops.cast(self.task_weights, "float32")
        if self.uncertainty is None:
            total = ops.sum(weights * losses)
        else:
            # A task switched off (weight 0) must not train its log-variance either.
            active = present * ops.cast(weights > 0, "float32")
            total = self.uncertainty(weights * losses, active)
        if self.losses:  # regularisation losses of the wrapped layers, as Keras would add them
            total = total + ops.sum(self.losses)
        return total

    def effective_weights(self):
        """{task: current multiplier of its loss}: w_i, or w_i * c_i * exp(-s_i)."""
        weights = ops.convert_to_numpy(self.task_weights)
        if self.uncertainty is not None:
            weights = weights * ops.convert_to_numpy(self.uncertainty.weights_now())
        return dict(zip(self.task_names, weights.astype(float).tolist()))

    def get_config(self):
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            tasks=self.tasks,
            weighting=self.weighting,
            loss_weights=self.initial_weights,
            uncertainty_form=self.uncertainty_form,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def compile_trainer(trainer, learning_rate=1e-3, optimizer=None, jit_compile="auto",
                    run_eagerly=False):
    """Compile a ``MultiTaskTrainer``: its loss is built in; metrics as ``compile_multitask``'s."""
    trainer.compile(
        optimizer=optimizer or keras.optimizers.AdamW(learning_rate=learning_rate),
        weighted_metrics={t: [task_metric(spec)] for t, spec in trainer.tasks.items()},
        jit_compile=jit_compile,
        run_eagerly=run_eagerly,
    )
    return trainer


def dwa_weights(previous, before_previous, temperature=2.0):
    """Dynamic weight averaging (Liu et al. 2019): w_i = K * softmax_i(r_i / T).

    r_i = L_i(t-1) / L_i(t-2): a task whose loss fell little (r close to 1 or above) gets more
    weight than one whose loss fell fast. The weights sum to K (the number of tasks);
    a large T makes them uniform.
    """
    previous = np.asarray(previous, "float64")
    before_previous = np.asarray(before_previous, "float64")
    ratios = previous / np.maximum(before_previous, 1e-12)
    scores = np.exp((ratios - ratios.max()) / temperature)
    return len(ratios) * scores / scores.sum()


@keras.saving.register_keras_serializable(package="ptft_keras")
class DynamicWeightAveraging(keras.callbacks.Callback):
    """Re-weights the tasks of a ``MultiTaskTrainer`` at the start of every epoch (DWA).

    Epochs 0 and 1 use weight 1 for every task (no loss ratio yet); from epoch 2 on,
    ``dwa_weights`` of the two previous epochs' average task losses (``<task>_loss`` logs).
    ``self.log`` holds the weights used in each epoch.
    """

    def __init__(self, temperature=2.0):
        super().__init__()
        self.temperature = float(temperature)
        self.task_losses = []  # one list of K epoch-average losses per finished epoch
        self.log = []

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "task_weights"):
            raise TypeError(
                "DynamicWeightAveraging needs a model with `task_weights` (wrap the multi-output "
                "model in MultiTaskTrainer): a compiled Keras model's loss_weights are constants."
            )
        self.task_losses = []
        self.log = []

    def weights_for_next_epoch(self):
        k = len(self.model.task_names)
        if len(self.task_losses) < 2:
            return np.ones(k)
        return dwa_weights(self.task_losses[-1], self.task_losses[-2], self.temperature)

    def on_epoch_begin(self, epoch, logs=None):
        weights = self.weights_for_next_epoch()
        self.model.task_weights.assign(weights.astype("float32"))
        self.log.append(dict(zip(self.model.task_names, weights.tolist())))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        missing = [t for t in self.model.task_names if f"{t}_loss" not in logs]
        if missing:
            raise KeyError(f"DWA needs the logs {[f'{t}_loss' for t in missing]}.")
        self.task_losses.append([float(logs[f"{t}_loss"]) for t in self.model.task_names])

    def get_config(self):
        return {"temperature": self.temperature}


# --- staged ("hierarchical") training ------------------------------------------------------------
def staged_training(model, backbone, tasks, x, y, sample_weight=None, validation_data=None,
                    epochs=(2, 1), learning_rates=(1e-3, 1e-3), loss_weights=None,
                    batch_size=32, callbacks=None, verbose=0, run_eagerly=False):
    """Two stages: ``"shared"`` trains backbone + heads together, ``"heads"`` freezes the backbone
    and trains the heads only (each head adapts to the final shared features).

    The heads learn in both stages (a head that never learned could not predict anything).
    Each stage recompiles (Keras reads
    ``trainable`` at compile time), with its own learning rate. The backbone is trainable again
    when this returns. Returns {"shared": History, "heads": History}.
    """
    histories = {}
    try:
        for stage, stage_epochs, lr in zip(("shared", "heads"), epochs, learning_rates):
            backbone.trainable = stage == "shared"
            compile_multitask(model, tasks, loss_weights, lr, run_eagerly=run_eagerly)
            histories[stage] = model.fit(
                x, y, sample_weight=sample_weight, validation_data=validation_data,
                epochs=stage_epochs, batch_size=batch_size, callbacks=callbacks,
                verbose=verbose,
            )
    finally:
        backbone.trainable = True
    return histories


# --- task sampling -------------------------------------------------------------------------------
def sampling_probabilities(sizes, temperature=1.0):
    """p_i ∝ n_i^(1/T): T=1 proportional to size, T=inf uniform, 1 < T < inf in between
    (small tasks are seen more often than their size alone would give them)."""
    sizes = np.asarray(sizes, "float64")
    if np.any(sizes <= 0):
        raise ValueError(f"Every task needs at least one example, got sizes {sizes.tolist()}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    scores = sizes ** (1.0 / temperature) if math.isfinite(temperature) else np.ones_like(sizes)
    return scores / scores.sum()


def index_stream(rng, n, count):
    """``count`` row indices from successive shuffles of range(n): each row once per pass."""
    passes = max(1, math.ceil(count / n))
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:count]


class TaskSampler(EpochDataset):
    """Batches for a multi-task model, each from ONE task, task i drawn with p_i ∝ n_i^(1/T).

    task_data: {task: (x, labels)} with x a dict of arrays (or a token-id array) and labels (n_i,)
    for that task only; every task's x has the same keys and row shape. Every batch is
    (x, y, sample_weight) with y and sample_weight holding all tasks: the drawn task's labels
    with weight 1, placeholders with weight 0 for the others. ``steps_per_epoch`` defaults to
    sum(n_i) / batch_size. Each epoch's plan (which task, which rows) is fixed by (seed, epoch),
    so a run is reproducible. ``self.plan_tasks`` lists the task of each batch of the current
    epoch (epoch 0's exists before fit, so it can be inspected).
    """

    def __init__(self, task_data, tasks, batch_size=32, temperature=1.0, steps_per_epoch=None,
                 seed=0, **kwargs):
        self.tasks = check_tasks(tasks)
        unknown = set(task_data) - set(self.tasks)
        if unknown:
            raise ValueError(f"task_data has tasks {sorted(unknown)} that are not in tasks.")
        self.names = list(task_data)
        self.data = {}
        for task in self.names:
            x, labels = task_data[task]
            x = x if isinstance(x, dict) else {"token_ids": np.asarray(x)}
            self.data[task] = ({k: np.asarray(v) for k, v in x.items()}, np.asarray(labels))
        first = self.data[self.names[0]][0] if self.names else {}
        for task in self.names:  # one model, one input layout: the batches stack into arrays
            x = self.data[task][0]
            if {k: v.shape[1:] for k, v in x.items()} != {k: v.shape[1:] for k, v in first.items()}:
                raise ValueError(
                    f"Task {task!r}: inputs {sorted(x)} with row shapes "
                    f"{[x[k].shape[1:] for k in sorted(x)]} differ from task "
                    f"{self.names[0]!r}'s; every task needs the same input keys and shapes."
                )
        self.sizes = np.array([len(self.data[t][1]) for t in self.names])
        self.probabilities = sampling_probabilities(self.sizes, temperature)
        batch_size = int(batch_size)
        self.steps = int(steps_per_epoch or max(1, self.sizes.sum() // batch_size))
        super().__init__(batch_size=batch_size, seed=seed, shuffle=False, **kwargs)

    def make_epoch(self, rng):
        batch = self.batch_size
        choice = rng.choice(len(self.names), size=self.steps, p=self.probabilities)
        self.plan_tasks = [self.names[i] for i in choice]
        self.plan_rows = [None] * self.steps
        for i, task in enumerate(self.names):
            steps = np.flatnonzero(choice == i)
            rows = index_stream(rng, self.sizes[i], len(steps) * batch)
            for j, step in enumerate(steps):
                self.plan_rows[step] = rows[j * batch : (j + 1) * batch]
        # Batch b is rows b*B..(b+1)*B: the plan laid out one batch after the other.
        x = {key: np.concatenate([self.data[task][0][key][rows] for task, rows in
                                  zip(self.plan_tasks, self.plan_rows)])
             for key in self.data[self.names[0]][0]}
        rows = np.concatenate(self.plan_rows)
        task_of_row = np.repeat(choice, batch)
        y, weights = {}, {}
        for name, spec in self.tasks.items():
            dtype = "int32" if spec["type"] == CLASSIFICATION else "float32"
            y[name] = np.zeros(len(rows), dtype)  # placeholder label, weight 0: loss ignores it
            weights[name] = np.zeros(len(rows), "float32")
            if name in self.data:
                mine = task_of_row == self.names.index(name)
                y[name][mine] = self.data[name][1][rows[mine]].astype(dtype)
                weights[name][mine] = 1.0
        return x, y, weights


# --- evaluation ---------------------------------------------
def evaluate_tasks(model, x, y, sample_weight, tasks, batch_size=256):
    """{task: metric on the labelled rows}: accuracy (classification) or MAE (regression)."""
    tasks = check_tasks(tasks)
    predictions = model.predict(x, batch_size=batch_size, verbose=0)
    results = {}
    for task, spec in tasks.items():
        if task not in predictions:
            continue
        keep = np.asarray(sample_weight[task]) > 0
        if not keep.any():
            results[task] = float("nan")
            continue
        pred, true = np.asarray(predictions[task])[keep], np.asarray(y[task])[keep]
        if spec["type"] == CLASSIFICATION:
            results[task] = float(np.mean(pred.argmax(-1) == true))
        else:
            results[task] = float(np.mean(np.abs(pred.reshape(-1) - true)))
    return results
