"""ONE ``finetune()`` for every strategy: checks, schedule, early stopping, one result object.

Every strategy runs the same protocol, so a comparison between them measures the strategy, not
the plumbing: AdamW with linear warmup + linear decay, sparse cross-entropy on logits, early
stopping on validation loss with the best weights restored (``patience=None`` turns it off).

``backup_dir=...`` makes a run survive interruptions: killed at any point (SIGKILL included)
and called again with the same arguments, ``finetune`` resumes from the last finished epoch and
returns the same weights and history as a run never interrupted (``ptft_keras.saving``).
"""

import dataclasses
import math
import time

import keras

from ptft_keras import saving
from ptft_keras.data.validation import check_ids_fit, check_labels
from ptft_keras.finetuning.strategies import (
    ALL_STRATEGIES,
    STRATEGIES,
    GradualUnfreezing,
    apply_lora,
    apply_strategy,
    count_params,
    layerwise_lr_multipliers,
)
from ptft_keras.models.classifier import _as_inputs
from ptft_keras.optimizers import WarmupLinearDecay, layerwise_optimizer


def compile_classifier(model, learning_rate=1e-3, weight_decay=0.01, jit_compile="auto",
                       optimizer=None):
    """AdamW (or ``optimizer``) + sparse categorical cross-entropy on logits, accuracy metric."""
    if optimizer is None:
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    return model


@dataclasses.dataclass
class FinetuneResult:
    """What ``finetune`` returns.

    history: {metric: [value per epoch]} (Keras' ``History.history``); seconds: wall time of
    ``fit``; trainable / total: parameters trained (the most at once, for gradual unfreezing) and
    in the whole model; epochs: epochs run (fewer than asked when early stopping fired).
    """

    strategy: str
    history: dict
    seconds: float
    trainable: int
    total: int
    epochs: int


def find_backbone(model):
    """The one nested ``keras.Model`` inside a classifier built by ``models.build_classifier``."""
    found = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(found) != 1:
        raise ValueError(
            f"Cannot tell which layer of {model.name!r} is the backbone ({len(found)} nested "
            f"models): pass backbone=... to finetune()."
        )
    return found[0]


def _checked_split(x, y, num_classes, split):
    y = check_labels(y, num_classes, f"{split} labels")
    x = _as_inputs(x)
    rows = len(next(iter(x.values())))
    if rows != len(y):
        raise ValueError(f"The {split} split has {rows} texts but {len(y)} labels.")
    return x, y


class _FinetuneBackup(saving.BackupAndRestore):
    """``saving.BackupAndRestore`` plus what ``finetune`` keeps between epochs.

    Early stopping (wait, best value and epoch, best weights), gradual unfreezing's log and the
    history of the epochs already run travel with each checkpoint, so a resumed run stops at
    the same epoch, restores the same best weights and returns the whole history. The run's
    arguments are saved too: resuming with other ones raises instead of mixing two runs.
    Must come last in the callback list (it saves what the others updated this epoch).
    """

    def __init__(self, backup_dir, run, epochs, early_stopping=None, unfreezer=None):
        super().__init__(backup_dir)
        self.run = run
        self.epochs = epochs
        self.early_stopping = early_stopping
        self.unfreezer = unfreezer
        self.epoch_logs = []

    def on_train_begin(self, logs=None):
        self.epoch_logs = []
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append(dict(logs or {}))
        super().on_epoch_end(epoch, logs)

    def history(self):
        """{metric: [value per epoch]}, every epoch of the run (resumed ones included)."""
        history = {}
        for logs in self.epoch_logs:
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
        return history

    def get_extra_state(self):
        state = {"run": self.run, "epoch_logs": self.epoch_logs, "arrays": []}
        stopper = self.early_stopping
        if stopper is not None:
            state["early_stopping"] = {
                "wait": stopper.wait, "stopped_epoch": stopper.stopped_epoch,
                "best": None if stopper.best is None else float(stopper.best),
                "best_epoch": stopper.best_epoch,
                "has_best_weights": stopper.best_weights is not None,
            }
            state["arrays"] = list(stopper.best_weights or [])
        if self.unfreezer is not None:
            state["unfreezing_log"] = self.unfreezer.log
        return state

    def set_extra_state(self, state):
        if state["run"] != self.run:
            changed = sorted(k for k in set(state["run"]) | set(self.run)
                             if state["run"].get(k) != self.run.get(k))
            raise ValueError(
                f"backup_dir={self.backup_dir!r} holds a run with other arguments ({changed} "
                f"differ): call finetune() with the arguments of that run to resume it, or "
                f"delete the folder (or pass another backup_dir) to start a new one."
            )
        self.epoch_logs = [dict(logs) for logs in state["epoch_logs"]]
        stopper = self.early_stopping
        if stopper is not None:
            saved = state["early_stopping"]
            stopper.wait = saved["wait"]
            stopper.stopped_epoch = saved["stopped_epoch"]
            stopper.best = saved["best"]
            stopper.best_epoch = saved["best_epoch"]
            stopper.best_weights = list(state["arrays"]) if saved["has_best_weights"] else None
            if stopper.stopped_epoch > 0:  # killed after early stopping fired: train no more
                self.model._initial_epoch = self.epochs
        if self.unfreezer is not None:
            self.unfreezer.log = [dict(entry) for entry in state["unfreezing_log"]]


def finetune(
    model,
    train,
    validation=None,
    strategy="full",
    backbone=None,
    k=None,
    epochs=3,
    batch_size=32,
    learning_rate=1e-3,
    warmup_fraction=0.1,
    weight_decay=0.01,
    patience=2,
    monitor="val_loss",
    decay=0.8,
    lora_rank=4,
    seed=0,
    verbose=0,
    jit_compile="auto",
    distribute_strategy=None,
    backup_dir=None,
):
    """Fine-tune a classifier ``model`` (logits (B, C)) with ``strategy``; returns ``FinetuneResult``.

    train / validation: ``(inputs, labels)``; inputs a token-id array (N, S) or a dict of arrays.
    strategy: "head" (linear probe), "freeze_bottom" (freeze embeddings + bottom ``k`` blocks),
    "full", "gradual" (ULMFiT gradual unfreezing, one group per epoch), "llrd" (layer-wise
    learning-rate ``decay``), "lora" (rank ``lora_rank`` updates, backbone frozen).
    backbone: found inside ``model`` when it was built by ``models.build_classifier``.
    Every input is checked before the first training step. Early stopping on ``monitor``
    (validation loss by default; "val_accuracy" suits a few hundred labels, where the loss can
    rise while accuracy still improves) with the best weights restored, when ``validation`` is
    given and ``patience`` is not None.

    distribute_strategy: a ``tf.distribute`` strategy; ``model`` must have been created in its
    ``scope()`` (checked) and the optimizer is created there too; ``batch_size`` is global.

    backup_dir: a folder for this run's checkpoint (one per epoch, deleted when training ends).
    A run killed before it ends, called again with the same model (built the same way) and
    arguments, resumes after its last finished epoch: the schedule (it follows the optimizer's
    step count), early stopping, dropout's random state and the history carry over, so the
    weights and ``history`` equal those of an uninterrupted run. ``seconds`` counts this call.
    """
    if strategy not in ALL_STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of {ALL_STRATEGIES}.")
    if monitor not in ("val_loss", "val_accuracy"):
        raise ValueError(f"monitor={monitor!r}: choose 'val_loss' or 'val_accuracy'.")
    num_classes = model.output.shape[-1]
    x_train, y_train = _checked_split(*train, num_classes, "training")
    validation_data = None
    if validation is not None:
        validation_data = _checked_split(*validation, num_classes, "validation")
    backbone = find_backbone(model) if backbone is None else backbone
    vocab_rows = getattr(backbone, "vocabulary_size", None)
    max_length = getattr(backbone, "max_sequence_length", None)
    splits = [("training", x_train)] + ([("validation", validation_data[0])]
                                        if validation_data is not None else [])
    for split, inputs in splits:
        if "token_ids" in inputs:  # text, floats, wrong shape, ids outside the table, too long
            check_ids_fit(inputs["token_ids"], vocab_rows if isinstance(vocab_rows, int) else None,
                          max_length if isinstance(max_length, int) else None,
                          f"{split} token ids")
    if distribute_strategy is not None:
        from ptft_keras.distributed import check_model_strategy  # tf.distribute: TF only

        check_model_strategy(model, distribute_strategy)

    if strategy in STRATEGIES:
        apply_strategy(backbone, strategy, k)
    elif strategy in ("llrd", "gradual"):
        apply_strategy(backbone, "full")
    else:  # lora
        apply_lora(backbone, rank=lora_rank)
    steps = epochs * math.ceil(len(y_train) / batch_size)
    schedule = WarmupLinearDecay(learning_rate, int(warmup_fraction * steps), steps)

    def compile_model():
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
        if strategy == "llrd":
            optimizer = layerwise_optimizer(optimizer, layerwise_lr_multipliers(backbone, decay))
        compile_classifier(model, jit_compile=jit_compile, optimizer=optimizer)

    if distribute_strategy is None:
        compile_model()
    else:
        with distribute_strategy.scope():  # the optimizer's variables must be mirrored too
            compile_model()
    callbacks = []
    unfreezer = None
    if strategy == "gradual":
        unfreezer = GradualUnfreezing(backbone)
        callbacks.append(unfreezer)
    stopper = None
    if validation_data is not None and patience is not None:
        stopper = keras.callbacks.EarlyStopping(
            monitor=monitor, patience=patience, restore_best_weights=True)
        callbacks.append(stopper)
    backup = None
    if backup_dir is not None:
        run = {
            "strategy": strategy, "k": k, "epochs": epochs, "batch_size": batch_size,
            "learning_rate": learning_rate, "warmup_fraction": warmup_fraction,
            "weight_decay": weight_decay, "patience": patience, "monitor": monitor, "decay": decay,
            "lora_rank": lora_rank, "seed": seed, "train_rows": len(y_train),
            "validation_rows": None if validation_data is None else len(validation_data[1]),
        }
        backup = _FinetuneBackup(backup_dir, run, epochs, stopper, unfreezer)
        callbacks.append(backup)  # last: it saves what the callbacks above updated
    trainable, total = count_params(model)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, validation_data=validation_data, epochs=epochs,
        batch_size=batch_size, callbacks=callbacks, verbose=verbose, shuffle=True,
    )
    seconds = time.perf_counter() - start
    if unfreezer is not None:
        trainable = max(entry["trainable"] for entry in unfreezer.log)
    if backup is not None:  # the epochs of the interrupted calls too
        epochs_history = backup.history()
        return FinetuneResult(strategy, epochs_history, seconds, trainable, total,
                              len(backup.epoch_logs))
    return FinetuneResult(strategy, history.history, seconds, trainable, total,
                          len(history.epoch))
