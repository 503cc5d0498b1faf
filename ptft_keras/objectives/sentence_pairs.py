"""Sentence-pair objectives: next-sentence prediction (BERT) and sentence-order prediction (ALBERT)."""

import re

import keras
import keras_hub
import numpy as np

from ptft_keras import tokenizers
from ptft_keras.models.classifier import sequence_output
from ptft_keras.objectives.base import Pretrainer
from ptft_keras.objectives.mlm import mask_tokens

# --- sentence pairs: NSP (BERT) and SOP (ALBERT) -------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def split_sentences(text):
    """Split a paragraph into sentences at . ! ? (followed by space) and 。！？."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def sample_nsp_pairs(documents, rng, is_next_rate=0.5):
    """BERT's next-sentence-prediction pairs.

    documents: list of documents, each a list of sentences (any objects: strings, id lists).
    For every sentence that has a successor, with probability ``is_next_rate`` the pair is
    (sentence, its true successor) with label 1; otherwise (sentence, a random sentence of a
    different document) with label 0. Returns a list of ``((doc, i), (doc2, j), label)``
    index pairs, so callers (and tests) can see exactly where each half came from.
    """
    if sum(1 for doc in documents if doc) < 2:
        raise ValueError("NSP needs at least two non-empty documents (negatives come from others).")
    others = [d for d, doc in enumerate(documents) if doc]
    pairs = []
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if rng.random() < is_next_rate:
                pairs.append(((d, i), (d, i + 1), 1))
                continue
            other = d
            while other == d:  # a different document: same-document "random" pairs are too easy
                other = others[rng.integers(len(others))]
            pairs.append(((d, i), (other, int(rng.integers(len(documents[other])))), 0))
    return pairs


def sample_sop_pairs(documents, rng, swap_rate=0.5):
    """ALBERT's sentence-order-prediction pairs: two consecutive sentences of one document,
    in order (label 1) or swapped (label 0, with probability ``swap_rate``).

    Both classes use the same two sentences, so topic cannot give the answer away (NSP's
    weakness, which is why ALBERT replaced it). Returns ``((doc, i), (doc, j), label)`` tuples.
    """
    pairs = []
    for d, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if rng.random() < swap_rate:
                pairs.append(((d, i + 1), (d, i), 0))
            else:
                pairs.append(((d, i), (d, i + 1), 1))
    return pairs


def sentence_pair_arrays(
    documents, rng, task, sequence_length, vocabulary_size, cls_id, sep_id, pad_id, mask_id,
    special_ids=None, random_start=5, mask_rate=0.15,
):
    """One epoch of MLM + NSP/SOP examples from tokenized documents.

    documents: list of documents, each a list of sentences as token-id lists. task: "nsp" or
    "sop". Returns ``(x, y, sample_weight)``: x = {token_ids, segment_ids, padding_mask,
    mask_positions}; y and sample_weight = {"mlm": (N, P), task: (N,)}.
    """

    sample = {"nsp": sample_nsp_pairs, "sop": sample_sop_pairs}[task]
    pairs = sample(documents, rng)
    first = [list(documents[d][i]) for (d, i), _, _ in pairs]
    second = [list(documents[d][j]) for _, (d, j), _ in pairs]
    labels = np.array([label for _, _, label in pairs], "int32")
    token_ids, segment_ids = tokenizers.pack(first, sequence_length, second, cls_id, sep_id, pad_id)
    # Real tokens: everything the packer wrote, up to and including the last [SEP].
    kept = np.minimum([len(a) + len(b) + 3 for a, b in zip(first, second)], sequence_length)
    padding_mask = (np.arange(sequence_length)[None, :] < kept[:, None]).astype("int32")
    masked = mask_tokens(
        token_ids, rng, vocabulary_size, mask_rate=mask_rate, mask_token_id=mask_id,
        special_ids=special_ids or (pad_id, cls_id, sep_id), random_start=random_start,
    )
    x = {
        "token_ids": masked["token_ids"],
        "segment_ids": segment_ids,
        "padding_mask": padding_mask,
        "mask_positions": masked["mask_positions"],
    }
    y = {"mlm": masked["mask_ids"], task: labels}
    weights = {"mlm": masked["mask_weights"], task: np.ones(len(labels), "float32")}
    return x, y, weights


@keras.saving.register_keras_serializable(package="ptft_keras")
class SentencePairPretrainer(Pretrainer):
    """MLM + a sentence-pair task (NSP for BERT, SOP for ALBERT), trained jointly.

    inputs: the backbone's (token_ids, segment_ids, padding_mask; (B, S)) + mask_positions (B, P).
    outputs: {"mlm": (B, P, V) logits, task: (B, 2) logits}. The MLM head is tied to the token
    embedding; the pair head reads the backbone's pooled [CLS] vector (keras-hub BERT/ALBERT
    ``pooled_output``: a tanh Dense over position 0) or position 0 when there is none.
    Subclassed, like ``MaskedLMPretrainer``, so the shared embedding survives save/load.
    """

    def __init__(self, backbone, task="nsp", dropout=0.1, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        if task not in ("nsp", "sop"):
            raise ValueError(f"task must be 'nsp' or 'sop', got {task!r}.")
        self.task = task
        self.dropout = dropout
        self.mlm_head = keras_hub.layers.MaskedLMHead(
            token_embedding=backbone.token_embedding,
            intermediate_activation="gelu",
            layer_norm_epsilon=1e-12,
            name="mlm_head",
        )
        self.pair_dropout = keras.layers.Dropout(dropout)
        self.pair_head = keras.layers.Dense(2, name=f"{task}_head", dtype="float32")
        self._compile_on_construction(compile)

    def call(self, inputs, training=False):
        backbone_inputs = {k: v for k, v in inputs.items() if k != "mask_positions"}
        outputs = self.backbone(backbone_inputs, training=training)
        sequence = sequence_output(outputs)
        pooled = outputs["pooled_output"] if isinstance(outputs, dict) else sequence[:, 0, :]
        pooled = self.pair_dropout(pooled, training=training)
        return {
            "mlm": self.mlm_head(sequence, mask_positions=inputs["mask_positions"]),
            self.task: self.pair_head(pooled),
        }

    def compile_defaults(self, learning_rate, weight_decay):
        """Joint loss = MLM loss (mean over masked tokens) + the pair task's loss, equal weights."""
        token_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight")
        accuracy = keras.metrics.SparseCategoricalAccuracy
        return {
            "optimizer": keras.optimizers.AdamW(learning_rate=learning_rate,
                                                weight_decay=weight_decay),
            "loss": {"mlm": token_loss,
                     self.task: keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            "loss_weights": {"mlm": 1.0, self.task: 1.0},
            "weighted_metrics": {"mlm": [accuracy(name="accuracy")],
                                 self.task: [accuracy(name="accuracy")]},
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            task=self.task,
            dropout=self.dropout,
        )
        return config


def compile_sentence_pair(model, learning_rate=1e-3, pair_weight=1.0, weight_decay=0.01,
                          jit_compile="auto"):
    """Joint loss = MLM loss (mean over masked tokens) + pair_weight x NSP/SOP loss."""
    token_loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay),
        loss={"mlm": token_loss,
              model.task: keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"mlm": 1.0, model.task: pair_weight},
        weighted_metrics={"mlm": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                          model.task: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        jit_compile=jit_compile,
    )
    return model


