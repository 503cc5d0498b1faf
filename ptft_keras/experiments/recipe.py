"""What gets a small encoder off the unigram plateau: MLM recipes compared at a fixed budget.

A freshly initialised encoder first learns the token frequencies and predicts them everywhere:
its masked-token perplexity sits near the *unigram perplexity* of the masked tokens (the
perplexity of a model that ignores the context) for many steps before it learns to use the
context. ``unigram_perplexity`` measures that plateau on the same held-out masked tokens the
model is scored on, so "off the plateau" is a number, not an impression.

``pretrain`` runs one recipe (backbone kind + optimiser + masking rate) for a number of steps or
seconds and records held-out perplexity along the way; ``fewshot_gain`` fine-tunes the result
and a from-scratch copy under one protocol (learning rate chosen on validation for each arm)
and reports both test accuracies per seed. Built on the public API only.
"""

import dataclasses
import time

import keras
import numpy as np

from ptft_keras import finetuning, models, objectives
from ptft_keras.optimizers import WarmupLinearDecay
from ptft_keras.tokenizers import CLS, PAD, SEP


def unigram_perplexity(train_ids, heldout, vocabulary_size):
    """exp(mean NLL) of the held-out masked tokens under the training tokens' unigram distribution.

    train_ids: int (N, S) token ids the model is pre-trained on; heldout: an ``MLMDataset``
    (static masks) that ``objectives.evaluate_mlm`` scores. Add-one smoothing over the vocabulary.
    Returns {"perplexity", "top_token_share"}: the plateau and the accuracy of always answering
    the most frequent token (both measured on the held-out masked tokens).
    """
    ids = np.asarray(train_ids).ravel()
    counts = np.bincount(ids[~np.isin(ids, (PAD, CLS, SEP))], minlength=vocabulary_size) + 1.0
    log_p = np.log(counts / counts.sum())
    total, n, top = 0.0, 0.0, 0.0
    most = int(np.argmax(counts))
    for index in range(len(heldout)):
        _, y, weight = heldout[index]
        y, weight = np.asarray(y), np.asarray(weight)
        total -= float(np.sum(log_p[y] * weight))
        top += float(np.sum((y == most) * weight))
        n += float(np.sum(weight))
    return {"perplexity": float(np.exp(total / n)), "top_token_share": top / n}


@dataclasses.dataclass
class Recipe:
    """One pre-training recipe. ``kind``: "transformer" or "lstm"; the rest as named."""

    name: str
    kind: str = "transformer"
    normalize_first: bool = True
    dropout: float = 0.0
    local_kernel_size: int = 0
    learning_rate: float = 3e-3
    warmup_fraction: float = 0.05
    decay: bool = True
    beta_2: float = 0.98
    clipnorm: float = 1.0
    mask_rate: float = 0.15
    batch_size: int = 64
    hidden_dim: int = 128
    num_layers: int = 2


def build_backbone(recipe, vocabulary_size, sequence_length):
    """The recipe's backbone: (B, S) token ids -> (B, S, H)."""
    if recipe.kind == "lstm":
        return models.LSTMBackbone(vocabulary_size, embedding_dim=recipe.hidden_dim,
                                   hidden_dim=recipe.hidden_dim // 2, bidirectional=True,
                                   num_layers=1, dropout=recipe.dropout)
    return models.TransformerBackbone(
        vocabulary_size, max_sequence_length=sequence_length, num_layers=recipe.num_layers,
        hidden_dim=recipe.hidden_dim, num_heads=max(1, recipe.hidden_dim // 32),
        intermediate_dim=4 * recipe.hidden_dim, dropout=recipe.dropout,
        normalize_first=recipe.normalize_first, local_kernel_size=recipe.local_kernel_size)


class _StopAfter(keras.callbacks.Callback):
    """Stops ``fit`` after ``seconds`` of wall time and evaluates every ``every`` steps."""

    def __init__(self, seconds, every, evaluate):
        super().__init__()
        self.seconds, self.every, self.evaluate = seconds, every, evaluate
        self.steps, self.curve = 0, []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.every and self.steps % self.every == 0:
            self.curve.append((self.steps, time.perf_counter() - self.start, self.evaluate()))
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def pretrain(recipe, train_ids, heldout, vocabulary_size, steps=None, seconds=None,
             eval_every=100, seed=0, jit_compile="auto"):
    """Pre-train ``recipe`` with MLM for ``steps`` (or until ``seconds`` have passed).

    The learning-rate schedule spans ``steps`` (or, with a time limit, the steps that limit is
    expected to allow: measured on the first 20 steps). Returns (backbone, info) with info:
    steps, seconds, curve [(step, seconds, held-out perplexity)], and the final held-out
    "perplexity" and "masked_accuracy".
    """
    sequence_length = np.asarray(train_ids).shape[1]
    keras.utils.set_random_seed(seed)
    backbone = build_backbone(recipe, vocabulary_size, sequence_length)
    mlm = objectives.MaskedLMPretrainer(backbone, compile=False)
    batches = objectives.MLMDataset(train_ids, vocabulary_size, batch_size=recipe.batch_size,
                                    seed=seed, mask_rate=recipe.mask_rate)
    total = steps
    if total is None:  # calibrate the schedule's length on a short timed run of a copy
        probe = objectives.MaskedLMPretrainer(build_backbone(recipe, vocabulary_size,
                                                             sequence_length))
        probe.fit(batches, steps_per_epoch=5, epochs=1, verbose=0)  # traces the step
        start = time.perf_counter()
        probe.fit(batches, steps_per_epoch=20, epochs=1, verbose=0)
        total = int(seconds / ((time.perf_counter() - start) / 20) * 0.9)
    learning_rate = recipe.learning_rate
    if recipe.decay:
        learning_rate = WarmupLinearDecay(recipe.learning_rate,
                                          int(recipe.warmup_fraction * total), total)
    mlm.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01,
                                                 beta_2=recipe.beta_2, clipnorm=recipe.clipnorm),
                jit_compile=jit_compile)
    tracker = _StopAfter(seconds, eval_every,
                         lambda: objectives.evaluate_mlm(mlm, heldout)["perplexity"])
    epochs = int(np.ceil(total / len(batches)))
    start = time.perf_counter()
    mlm.fit(batches, epochs=epochs, steps_per_epoch=min(total, len(batches)), verbose=0,
            callbacks=[tracker])
    wall = time.perf_counter() - start
    final = objectives.evaluate_mlm(mlm, heldout)
    return backbone, {"steps": tracker.steps, "seconds": wall, "curve": tracker.curve,
                      "perplexity": final["perplexity"],
                      "masked_accuracy": final["masked_accuracy"]}


def fewshot_gain(recipe, weights, vocabulary_size, train, validation, test, seeds=(0, 1, 2),
                 learning_rates=(1e-3, 3e-4), epochs=30, batch_size=16, patience=5,
                 monitor="val_accuracy", probe_epochs=0, probe_learning_rate=3e-3):
    """Fine-tune from ``weights`` and from scratch under one protocol; accuracy per seed and arm.

    train / validation / test: (token ids (N, S), labels (N,)). For each arm and seed the
    learning rate is chosen on the validation accuracy (the same search for both arms; full
    fine-tuning, mean pooling, early stopping on ``monitor``). ``probe_epochs > 0`` first trains
    the head alone on frozen features (linear probing, then fine-tuning: Kumar et al. 2022), for
    both arms. Returns a list of dicts {arm, seed, learning_rate, val_accuracy, test_accuracy}.
    """
    sequence_length = train[0].shape[1]
    rows = []
    for arm, start_from in (("pre-trained", weights), ("scratch", None)):
        for seed in seeds:
            best = None
            for lr in learning_rates:
                keras.utils.set_random_seed(seed)
                backbone = build_backbone(recipe, vocabulary_size, sequence_length)
                if start_from is not None:
                    backbone.set_weights(start_from)
                clf = models.build_classifier(backbone, num_classes=2, pooling="mean")
                if probe_epochs:
                    finetuning.finetune(clf, train, validation, strategy="head",
                                        epochs=probe_epochs, batch_size=batch_size,
                                        learning_rate=probe_learning_rate, patience=None,
                                        seed=seed)
                finetuning.finetune(clf, train, validation, strategy="full", epochs=epochs,
                                    batch_size=batch_size, learning_rate=lr, patience=patience,
                                    monitor=monitor, seed=seed)
                val = float(np.mean(models.predict_proba(clf, validation[0]).argmax(-1)
                                    == validation[1]))
                if best is None or val > best[1]:
                    test_acc = float(np.mean(models.predict_proba(clf, test[0]).argmax(-1)
                                             == test[1]))
                    best = (lr, val, test_acc)
            rows.append({"arm": arm, "seed": seed, "learning_rate": best[0],
                         "val_accuracy": best[1], "test_accuracy": best[2]})
    return rows
