"""Fine-tuning: a classification head on any backbone, a warmup schedule, early stopping.

``build_classifier`` returns a Functional model: the backbone's inputs -> pooled (B, H) ->
dropout -> Dense -> logits (B, num_classes). Logits, not probabilities, because the loss is more
stable computed from logits; ``predict_proba`` applies the softmax for evaluation.
"""

import math
import time

import keras
import numpy as np
from keras import ops

from ptft_keras import strategies
from ptft_keras.backbones import sequence_output
from ptft_keras.tokenizers import check_ids_fit


@keras.saving.register_keras_serializable(package="ptft_keras")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the sequence over non-padding positions: (B, S, H), (B, S) -> (B, H)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # it consumes the mask: nothing downstream needs it

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, sequence, padding_mask):
        mask = ops.cast(ops.expand_dims(padding_mask, -1), sequence.dtype)
        total = ops.sum(sequence * mask, axis=1)
        # max(.., 1) keeps an all-padding row at zero instead of NaN.
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


def build_classifier(backbone, num_classes=2, pooling="cls", dropout=0.1, name="classifier"):
    """Backbone + head. pooling: "cls" (first token) or "mean" (over non-padding tokens).

    Inputs: whatever the backbone takes (ours: {"token_ids": (B, S)}; a keras-hub family's:
    ``families.classification_inputs`` makes them). Output: logits (B, C).
    """
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}.")
    inputs = {
        name_: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name_)
        for name_, tensor in backbone.input.items()
    }
    x = sequence_output(backbone(inputs))
    if pooling == "cls":
        pooled = x[:, 0, :]
    else:
        padding_mask = inputs.get("padding_mask", inputs.get("encoder_padding_mask"))
        if padding_mask is None:
            padding_mask = ops.not_equal(inputs["token_ids"], 0)
        pooled = MaskedMeanPooling(name="mean_pool")(x, padding_mask)
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    logits = keras.layers.Dense(num_classes, name="head", dtype="float32")(pooled)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="ptft_keras")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0.

    Warmup protects pre-trained weights from the large, noisy first updates of Adam (its
    second-moment estimate is still poor); the decay anneals to a stable end point.
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * step / max(self.warmup_steps, 1)
        decay_span = max(self.total_steps - self.warmup_steps, 1)
        decay = self.peak * ops.maximum(0.0, (self.total_steps - step) / decay_span)
        return ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def compile_classifier(model, learning_rate=1e-3, jit_compile="auto"):
    """AdamW + sparse categorical cross-entropy on logits, accuracy metric."""
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )
    return model


def check_labels(labels, num_classes, name="labels"):
    """Raise ValueError unless labels are integers in [0, num_classes); returns int32 array."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError(f"{name} is empty: the split has no examples.")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype("int64")
        else:
            raise ValueError(
                f"{name} must be integer class ids 0..{num_classes - 1}, got dtype "
                f"{labels.dtype}. Map string labels to ids first (e.g. with a dict)."
            )
    bad = sorted(set(np.unique(labels[(labels < 0) | (labels >= num_classes)]).tolist()))
    if bad:
        raise ValueError(
            f"{name} contain {bad}, outside the label set 0..{num_classes - 1}. "
            f"Fix the labels or build the classifier with a larger num_classes."
        )
    return labels.astype("int32")


def finetune(
    model,
    train,
    val,
    backbone=None,
    strategy="full",
    k=None,
    epochs=3,
    batch_size=32,
    learning_rate=1e-3,
    warmup_fraction=0.1,
    patience=2,
    seed=0,
    verbose=0,
    distribute_strategy=None,
):
    """Fine-tune ``model`` on ``train = (token_ids, labels)``; validate on ``val``.

    Applies ``strategy`` to ``backbone`` (see ``ptft_keras.strategies``), uses a warmup +
    linear-decay schedule and early stopping on validation loss (best weights restored).
    Every input is checked before training starts. Returns (history, seconds).

    ``distribute_strategy``: a ``tf.distribute`` strategy (``ptft_keras.distributed``) to train
    data-parallel; ``model`` must have been created inside its ``scope()`` (checked), and the
    optimizer is created there too. ``batch_size`` is then the global batch.
    """
    num_classes = model.output.shape[-1]
    (x_train, y_train), (x_val, y_val) = train, val
    y_train = check_labels(y_train, num_classes, "training labels")
    y_val = check_labels(y_val, num_classes, "validation labels")
    x_train, x_val = _as_inputs(x_train), _as_inputs(x_val)
    for x, y, split in ((x_train, y_train, "training"), (x_val, y_val, "validation")):
        if len(x["token_ids"]) != len(y):
            raise ValueError(
                f"The {split} split has {len(x['token_ids'])} texts but {len(y)} labels."
            )
    if backbone is not None:
        vocab_rows = getattr(backbone, "vocabulary_size", None)
        if vocab_rows:
            check_ids_fit(x_train["token_ids"], vocab_rows)
        strategies.apply_strategy(backbone, strategy, k)
    steps = epochs * math.ceil(len(y_train) / batch_size)
    schedule = WarmupLinearDecay(learning_rate, int(warmup_fraction * steps), steps)
    if distribute_strategy is None:
        compile_classifier(model, schedule)
    else:
        from ptft_keras.distributed import check_model_strategy  # tf.distribute: TF only

        check_model_strategy(model, distribute_strategy)
        with distribute_strategy.scope():  # the optimizer's variables must be mirrored too
            compile_classifier(model, schedule)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=epochs,
        batch_size=batch_size, callbacks=[stop], verbose=verbose, shuffle=True,
    )
    return history, time.perf_counter() - start


def predict_proba(model, x, batch_size=256):
    """Class probabilities (B, C) from a logits model."""
    logits = model.predict(_as_inputs(x), batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype("float32"), axis=-1))


def _as_inputs(x):
    return x if isinstance(x, dict) else {"token_ids": np.asarray(x)}
