"""ONE ``finetune()`` for every strategy: checks, schedule, early stopping, one result object.

Every strategy runs the same protocol, so a comparison between them measures the strategy, not
the plumbing: AdamW with linear warmup + linear decay, sparse cross-entropy on logits, early
stopping on validation loss with the best weights restored (``patience=None`` turns it off).
"""

import dataclasses
import math
import time

import keras

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
    decay=0.8,
    lora_rank=4,
    seed=0,
    verbose=0,
    jit_compile="auto",
    distribute_strategy=None,
):
    """Fine-tune a classifier ``model`` (logits (B, C)) with ``strategy``; returns ``FinetuneResult``.

    train / validation: ``(inputs, labels)``; inputs a token-id array (N, S) or a dict of arrays.
    strategy: "head" (linear probe), "freeze_bottom" (freeze embeddings + bottom ``k`` blocks),
    "full", "gradual" (ULMFiT gradual unfreezing, one group per epoch), "llrd" (layer-wise
    learning-rate ``decay``), "lora" (rank ``lora_rank`` updates, backbone frozen).
    backbone: found inside ``model`` when it was built by ``models.build_classifier``.
    Every input is checked before the first training step. Early stopping on validation loss
    (best weights restored) when ``validation`` is given and ``patience`` is not None.

    distribute_strategy: a ``tf.distribute`` strategy; ``model`` must have been created in its
    ``scope()`` (checked) and the optimizer is created there too; ``batch_size`` is global.
    """
    if strategy not in ALL_STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of {ALL_STRATEGIES}.")
    num_classes = model.output.shape[-1]
    x_train, y_train = _checked_split(*train, num_classes, "training")
    validation_data = None
    if validation is not None:
        validation_data = _checked_split(*validation, num_classes, "validation")
    backbone = find_backbone(model) if backbone is None else backbone
    vocab_rows = getattr(backbone, "vocabulary_size", None)
    if vocab_rows and "token_ids" in x_train:
        check_ids_fit(x_train["token_ids"], vocab_rows)
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
    if validation_data is not None and patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True))
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
    return FinetuneResult(strategy, history.history, seconds, trainable, total,
                          len(history.epoch))
