"""Masked-language-model (MLM) pre-training, BERT style.

Data side: ``mask_tokens`` picks 15% of the non-special positions; of those, 80% become [MASK],
10% a random token and 10% stay as they are (the model must still predict them, so it cannot
learn "only [MASK] positions matter"). ``MLMDataset`` re-masks every epoch (dynamic masking,
RoBERTa) or masks once (static masking, original BERT).

Model side: ``MaskedLMPretrainer`` wraps any backbone that exposes ``token_embedding`` and adds an
MLM head whose output projection is tied to that embedding. Like a keras-hub task it compiles
itself with the course's defaults (``compile`` takes overrides; ``compile_mlm`` is the same).
The loss and accuracy count only the masked positions (``mask_weights`` are the sample
weights); perplexity = exp(masked loss).
"""

import math

import keras
import keras_hub
import numpy as np

from ptft_keras.data.datasets import EpochDataset
from ptft_keras.data.validation import check_ids_fit
from ptft_keras.models.classifier import sequence_output
from ptft_keras.objectives.base import Pretrainer
from ptft_keras.tokenizers import CLS, MASK, PAD, SEP, SPECIAL_TOKENS


def mask_tokens(
    token_ids,
    rng,
    vocabulary_size,
    mask_rate=0.15,
    max_predictions=None,
    mask_token_id=MASK,
    special_ids=(PAD, CLS, SEP),
    random_start=len(SPECIAL_TOKENS),
):
    """Apply BERT's 80/10/10 masking to a batch of token ids.

    token_ids: int (B, S). rng: a ``np.random.Generator`` (the caller controls the seed).
    Returns a dict with ``token_ids`` (B, S) corrupted inputs, ``mask_positions`` (B, P),
    ``mask_ids`` (B, P) original tokens to predict and ``mask_weights`` (B, P) 1.0 on real
    predictions, 0.0 on padding slots. P = max_predictions (default: ceil(S * mask_rate) + 1).
    Random replacements are drawn from the non-special tokens [random_start, vocabulary_size).
    """
    token_ids = np.asarray(token_ids)
    batch, length = token_ids.shape
    if max_predictions is None:
        max_predictions = int(math.ceil(length * mask_rate)) + 1
    selectable = ~np.isin(token_ids, special_ids)
    # Random scores; choose the lowest-scoring selectable positions (at least one per row that
    # has any selectable token, so no row contributes nothing).
    scores = np.where(selectable, rng.random((batch, length)), np.inf)
    counts = np.minimum(
        np.maximum(np.round(selectable.sum(1) * mask_rate).astype(int), selectable.any(1)),
        max_predictions,
    )
    order = np.argsort(scores, axis=1, kind="stable")[:, :max_predictions]
    weights = (np.arange(max_predictions)[None, :] < counts[:, None]).astype("float32")
    # Sort chosen positions so the model sees them left to right (purely cosmetic for learners).
    positions = np.where(weights > 0, order, length)
    positions = np.sort(positions, axis=1)
    positions = np.where(positions == length, 0, positions).astype("int32")

    rows = np.arange(batch)[:, None]
    labels = token_ids[rows, positions].astype("int32")
    corrupted = token_ids.copy()
    action = rng.random((batch, max_predictions))
    replace_mask = (action < 0.8) & (weights > 0)
    replace_random = (action >= 0.8) & (action < 0.9) & (weights > 0)
    random_ids = rng.integers(random_start, vocabulary_size, size=(batch, max_predictions))
    new_values = np.where(replace_mask, mask_token_id, np.where(replace_random, random_ids, labels))
    valid = weights > 0
    corrupted[rows.repeat(max_predictions, 1)[valid], positions[valid]] = new_values[valid]
    return {
        "token_ids": corrupted.astype("int32"),
        "mask_positions": positions,
        "mask_ids": labels * valid,
        "mask_weights": weights,
    }


class MLMDataset(EpochDataset):
    """Batches of masked token ids for ``fit``: (inputs, mask_ids, mask_weights).

    ``dynamic=True`` draws new masks every epoch (RoBERTa); ``dynamic=False`` masks every
    sequence once and reuses that masking forever (BERT's original static masking).
    Reproducible: epoch e of a dataset with seed s always gets the same masks.
    """

    shuffle_after = False  # the order is drawn first, then the masks of the ordered rows

    def __init__(
        self, token_ids, vocabulary_size, batch_size=32, dynamic=True, seed=0, shuffle=True,
        extra_inputs=None, **mask_kwargs,
    ):
        if np.asarray(token_ids).size == 0:
            raise ValueError("MLMDataset got no sequences: the pre-training corpus is empty.")
        self.token_ids = check_ids_fit(token_ids, vocabulary_size, name="MLMDataset token ids")
        self.vocabulary_size = vocabulary_size
        # Constant inputs some backbones need besides token ids (keras-hub BERT: segment_ids).
        self.extra_inputs = extra_inputs or {}
        self.mask_kwargs = mask_kwargs
        super().__init__(batch_size=batch_size, dynamic=dynamic, seed=seed, shuffle=shuffle)

    def make_epoch(self, rng):
        self.order = self.row_order(rng, len(self.token_ids))
        self.masked = mask_tokens(
            self.token_ids[self.order], rng, self.vocabulary_size, **self.mask_kwargs
        )
        inputs = {key: self.masked[key] for key in ("token_ids", "mask_positions")}
        for key, make in self.extra_inputs.items():
            inputs[key] = make(inputs["token_ids"])
        return inputs, self.masked["mask_ids"], self.masked["mask_weights"]


@keras.saving.register_keras_serializable(package="ptft_keras")
class MaskedLMPretrainer(Pretrainer):
    """Backbone + MLM head tied to the backbone's token embedding.

    inputs: the backbone's inputs plus ``mask_positions`` int (B, P).
    output: logits over the vocabulary at the masked positions, (B, P, V).
    compile=True (default): compiled on construction with the course's defaults (AdamW 1e-3,
    weight decay 0.01, masked-token cross-entropy, "masked_accuracy"), so ``fit`` works at
    once; ``compile(learning_rate=5e-4)`` or ``compile(optimizer=...)`` overrides them.
    Subclassed (not Functional) on purpose: a Functional model with a shared-embedding head
    saves but does not reload in Keras 3.15; this one does.
    """

    def __init__(self, backbone, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        self.mlm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding,
            intermediate_activation="gelu",
            layer_norm_epsilon=1e-12,
            name="mlm_head",
        )
        self._compile_on_construction(compile)

    def compile_defaults(self, learning_rate, weight_decay):
        return mlm_compile_defaults(learning_rate, weight_decay)  # "masked_accuracy"

    def call(self, inputs, training=False):
        backbone_inputs = {k: v for k, v in inputs.items() if k != "mask_positions"}
        x = sequence_output(self.backbone(backbone_inputs, training=training))
        return self.mlm_head(x, mask_positions=inputs["mask_positions"])


def mlm_compile_defaults(learning_rate=1e-3, weight_decay=0.01, metric_name="masked_accuracy"):
    """The course's MLM compile arguments (fresh objects each call): optimizer, loss, metrics."""
    return {
        "optimizer": keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay),
        # Divide by the number of masked tokens, not by batch x max_predictions: otherwise the
        # padding slots dilute the loss and exp(loss) is not the perplexity.
        "loss": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        ),
        "weighted_metrics": [keras.metrics.SparseCategoricalAccuracy(name=metric_name)],
    }


def compile_mlm(model, learning_rate=1e-3, weight_decay=0.01, jit_compile="auto",
                metric_name="masked_accuracy", distribute_strategy=None):
    """Compile for MLM: cross-entropy and accuracy weighted by ``mask_weights``.

    Any token-prediction objective with per-position weights compiles the same way
    (``objectives.compile_lm`` is this with the metric called "accuracy").
    ``distribute_strategy``: a ``tf.distribute`` strategy; ``model`` must have been created
    inside its ``scope()`` (checked) and is compiled there, so ``fit`` trains data-parallel.
    Under it the loss is averaged per replica (over that replica's masked tokens), then over
    replicas: equal to the global masked-token mean only when replicas mask equally many.
    """
    if distribute_strategy is not None:
        from ptft_keras.distributed import (
            check_model_strategy,  # tf.distribute: TF only
        )

        check_model_strategy(model, distribute_strategy)
        with distribute_strategy.scope():
            return compile_mlm(model, learning_rate, weight_decay, jit_compile, metric_name)
    # The same objects ``MaskedLMPretrainer.compile`` uses by default, passed explicitly so any
    # token-prediction model (not only a MaskedLMPretrainer) compiles this way.
    model.compile(**mlm_compile_defaults(learning_rate, weight_decay, metric_name),
                  jit_compile=jit_compile)
    return model


def evaluate_mlm(model, dataset):
    """Masked-token loss, accuracy and perplexity on ``dataset`` (an MLMDataset), exactly.

    One pass over the batches, summing token by token: loss = total NLL / predicted tokens,
    perplexity = exp(loss), accuracy = correct / predicted tokens. (``model.evaluate`` averages
    per-batch means, which equals this only when every batch predicts equally many tokens.)
    Returns {"loss", "masked_accuracy", "perplexity"}.
    """
    total, correct, count = 0.0, 0.0, 0.0
    for index in range(len(dataset)):
        x, y, weight = dataset[index]
        # predict_on_batch runs the compiled predict function (eager calls are ~2x slower).
        logits = np.asarray(model.predict_on_batch(x), dtype="float64")  # (B, P, V)
        weight = np.asarray(weight, dtype="float64")
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]  # (B, P)
        y = np.asarray(y, dtype="int64")
        nll = log_z - np.take_along_axis(logits, y[..., None], axis=-1)[..., 0]
        total += float(np.sum(nll * weight))
        correct += float(np.sum((logits.argmax(axis=-1) == y) * weight))
        count += float(np.sum(weight))
    if count == 0:
        raise ValueError("The dataset predicts no tokens: nothing is masked.")
    loss = total / count
    return {"loss": loss, "masked_accuracy": correct / count, "perplexity": math.exp(loss)}


def compile_lm(model, learning_rate=1e-3, weight_decay=0.01, jit_compile="auto"):
    """Compile a token-prediction model: cross-entropy averaged over the weighted positions.

    ``mean_with_sample_weight`` divides by the number of predicted tokens (not by batch x
    length), so ``exp(loss)`` is the per-token perplexity whatever the padding.
    """
    return compile_mlm(model, learning_rate, weight_decay, jit_compile, metric_name="accuracy")


def perplexity(model, dataset):
    """exp(total token NLL / number of weighted tokens) over every batch of ``dataset``: the
    one exact perplexity of the course, for any (x, y, sample_weight) token-prediction dataset."""
    return evaluate_mlm(model, dataset)["perplexity"]
