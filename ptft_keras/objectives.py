"""Pre-training objectives of the model families: data transformations and the models they train.

Every objective is two halves:

- a NumPy data transformation (here, deterministic for a given ``np.random.Generator``) that turns
  token ids into model inputs, targets and sample weights, and
- a Keras model that maps those inputs to logits, compiled with a loss that counts only the
  positions the objective predicts.

Objective by objective:

- causal LM (GPT-2): ``chunk_token_stream`` + ``causal_lm_arrays`` -> ``CausalLMPretrainer``;
  ``perplexity``, ``generate`` with keras-hub samplers (greedy, temperature, top-k, top-p).
- MLM (BERT static, RoBERTa/DeBERTa dynamic): ``pretraining.mask_tokens`` / ``MLMDataset`` ->
  ``pretraining.MaskedLMPretrainer``.
- MLM + NSP (BERT) or MLM + SOP (ALBERT): ``sample_nsp_pairs`` / ``sample_sop_pairs`` +
  ``sentence_pair_arrays`` -> ``SentencePairPretrainer`` (two outputs, weighted losses).
- span corruption (T5): ``random_spans_noise_mask`` + ``span_corruption`` ->
  ``Seq2SeqPretrainer`` on a keras-hub ``T5Backbone``.
- permutation LM (XLNet): ``permutation_masks`` + ``permutation_lm_arrays`` ->
  ``PermutationLMPretrainer`` (two-stream attention) on a keras-hub ``XLNetBackbone``.

``EpochDataset`` feeds any of them to ``fit``: it rebuilds the arrays every epoch (dynamic: new
masks, pairs, spans or orders) or builds them once (static).
"""

import math
import re

import keras
import keras_hub
import numpy as np
from keras import ops

from ptft_keras.backbones import sequence_output


# --- feeding any objective to fit -----------------------------------------------------------------
def _take(structure, index):
    """Rows ``index`` of an array or of every array in a dict."""
    if isinstance(structure, dict):
        return {key: value[index] for key, value in structure.items()}
    return structure[index]


def _rows(structure):
    first = next(iter(structure.values())) if isinstance(structure, dict) else structure
    return len(first)


class EpochDataset(keras.utils.PyDataset):
    """Batches ``(x, y, sample_weight)`` from arrays that ``make_epoch(rng)`` builds.

    ``make_epoch(rng) -> (x, y, sample_weight)``: each a (N, ...) array or a dict of them.
    ``dynamic=True`` calls it again every epoch with a new generator seeded ``[seed, epoch]``
    (RoBERTa-style dynamic masking, new pairs, spans or orders); ``dynamic=False`` builds the
    epoch-0 arrays once and reuses them (BERT-style static masking). Rows are shuffled with the
    same generator, so a given (seed, epoch) always gives the same batches.
    """

    def __init__(self, make_epoch, batch_size=32, dynamic=True, seed=0, shuffle=True, **kwargs):
        super().__init__(**kwargs)
        self.make_epoch = make_epoch
        self.batch_size = batch_size
        self.dynamic = dynamic
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self._prepare()

    def _prepare(self):
        rng = np.random.default_rng([self.seed, self.epoch if self.dynamic else 0])
        x, y, w = self.make_epoch(rng)
        n = _rows(x)
        if n == 0:
            raise ValueError("The objective produced no examples: the text is too short.")
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        self.arrays = tuple(_take(part, order) for part in (x, y, w))
        self.num_examples = n

    def __len__(self):
        return int(math.ceil(self.num_examples / self.batch_size))

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return tuple(_take(arrays, part) for arrays in self.arrays)

    def on_epoch_end(self):
        self.epoch += 1
        if self.dynamic:
            self._prepare()


def compile_lm(model, learning_rate=1e-3, weight_decay=0.01, jit_compile="auto"):
    """Compile a token-prediction model: cross-entropy averaged over the weighted positions.

    ``mean_with_sample_weight`` divides by the number of predicted tokens (not by batch x
    length), so ``exp(loss)`` is the per-token perplexity whatever the padding.
    """
    from ptft_keras.pretraining import compile_mlm

    return compile_mlm(model, learning_rate, weight_decay, jit_compile, metric_name="accuracy")


def perplexity(model, dataset):
    """exp(total token NLL / number of weighted tokens) over every batch of ``dataset``.

    Summed exactly, token by token: ``evaluate`` averages per-batch means, which is only the
    perplexity when every batch predicts the same number of tokens.
    """
    total, count = 0.0, 0.0
    for index in range(len(dataset)):
        x, y, weight = dataset[index]
        logits = model(x, training=False)
        nll = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        total += float(ops.sum(nll * ops.cast(weight, nll.dtype)))
        count += float(np.sum(weight))
    return math.exp(total / count)


# --- causal language modelling (GPT) --------------------------------------------------------------
def chunk_token_stream(sequences, block_length, separator_id=None):
    """Concatenate token-id lists (with ``separator_id`` after each) and cut equal blocks.

    Returns int32 (N, block_length); the incomplete last block is dropped. GPT-style: no
    padding at all, every position is a real token, documents run into each other.
    """
    stream = []
    for ids in sequences:
        stream.extend(int(i) for i in ids)
        if separator_id is not None:
            stream.append(int(separator_id))
    n = len(stream) // block_length
    return np.asarray(stream[: n * block_length], "int32").reshape(n, block_length)


def causal_lm_arrays(blocks):
    """Next-token prediction: blocks (N, S+1) -> inputs (N, S), targets (N, S), weights (N, S).

    Input position t sees tokens 0..t (the decoder's causal mask does that) and must predict
    token t+1.
    """
    blocks = np.asarray(blocks, "int32")
    x = {"token_ids": blocks[:, :-1], "padding_mask": np.ones_like(blocks[:, :-1])}
    return x, blocks[:, 1:], np.ones(blocks[:, 1:].shape, "float32")


@keras.saving.register_keras_serializable(package="ptft_keras")
class CausalLMPretrainer(keras.Model):
    """A decoder backbone + an output layer tied to its token embedding.

    inputs: the backbone's (keras-hub GPT-2: ``token_ids``, ``padding_mask``, each (B, S)).
    output: next-token logits (B, S, V). The backbone's ``token_embedding`` must be a keras-hub
    ``ReversibleEmbedding`` (its ``reverse=True`` call is the tied projection h @ E^T).
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs, training=False):
        x = sequence_output(self.backbone(inputs, training=training))
        return self.backbone.token_embedding(x, reverse=True)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def make_sampler(strategy="greedy", temperature=1.0, k=10, p=0.9, seed=None):
    """A keras-hub sampler: "greedy", "temperature" (sample from softmax(logits / T)),
    "top_k" (sample among the k most likely) or "top_p" (among the smallest set of tokens
    whose probability reaches p)."""
    samplers = keras_hub.samplers
    if strategy == "greedy":
        return samplers.GreedySampler()
    if strategy == "temperature":
        return samplers.RandomSampler(temperature=temperature, seed=seed)
    if strategy == "top_k":
        return samplers.TopKSampler(k=k, temperature=temperature, seed=seed)
    if strategy == "top_p":
        return samplers.TopPSampler(p=p, temperature=temperature, seed=seed)
    raise ValueError(f"Unknown strategy {strategy!r}: greedy, temperature, top_k or top_p.")


def generate(model, prompts, max_length, sampler="greedy", stop_token_ids=None, pad_id=0):
    """Continue each prompt up to ``max_length`` tokens with a keras-hub sampler.

    model: a causal LM mapping {"token_ids", "padding_mask"} (B, S) to logits (B, S, V).
    prompts: list of token-id lists (different lengths are fine). sampler: a strategy name
    (see ``make_sampler``) or a ``keras_hub.samplers.Sampler``. Returns int32 (B, max_length).
    Each step reruns the model on the whole buffer (no key/value cache): simple, and cheap for
    the course's small models; positions after the one being predicted cannot leak into it
    because the decoder is causal.
    """
    if isinstance(sampler, str):
        sampler = make_sampler(sampler)
    lengths = np.array([len(p) for p in prompts])
    if lengths.min() < 1 or lengths.max() >= max_length:
        raise ValueError("Every prompt needs 1 to max_length - 1 tokens.")
    buffer = np.full((len(prompts), max_length), pad_id, "int32")
    for row, prompt in enumerate(prompts):
        buffer[row, : len(prompt)] = prompt
    is_prompt = np.arange(max_length)[None, :] < lengths[:, None]  # never overwritten

    def next_logits(tokens, cache, index):
        logits = model(
            {"token_ids": tokens, "padding_mask": ops.ones_like(tokens)}, training=False
        )
        # Logits at position index - 1 predict the token at position index.
        return ops.take(logits, index - 1, axis=1), None, cache

    out = sampler(
        next_logits,
        ops.convert_to_tensor(buffer),
        index=int(lengths.min()),
        mask=ops.convert_to_tensor(is_prompt),
        stop_token_ids=stop_token_ids,
    )
    return np.asarray(ops.convert_to_numpy(out), "int32")


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


def pack_sentence_pairs(first, second, sequence_length, cls_id, sep_id, pad_id):
    """[CLS] A [SEP] B [SEP] [PAD]... with segment ids 0 (for [CLS] A [SEP]) and 1 (B [SEP]).

    first, second: lists of token-id lists. Returns int32 ``token_ids``, ``segment_ids``,
    ``padding_mask``, each (N, sequence_length). Too-long pairs lose tokens from the end of
    the longer segment first (keras-hub ``MultiSegmentPacker``, "waterfall" would cut B only).
    """
    import tensorflow as tf  # data side: keras-hub packers take ragged tensors

    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=sequence_length,
        start_value=cls_id,
        end_value=sep_id,
        pad_value=pad_id,
        truncate="round_robin",
    )
    token_ids, segment_ids = packer(
        (tf.ragged.constant(first, dtype="int32"), tf.ragged.constant(second, dtype="int32"))
    )
    token_ids = np.asarray(token_ids, "int32")
    segment_ids = np.asarray(segment_ids, "int32")
    # Real tokens: everything the packer wrote, i.e. up to and including the last [SEP].
    length = np.array([len(a) + len(b) + 3 for a, b in zip(first, second)])
    kept = np.minimum(length, sequence_length)
    padding_mask = np.arange(sequence_length)[None, :] < kept[:, None]
    return token_ids, segment_ids, padding_mask.astype("int32")


def sentence_pair_arrays(
    documents, rng, task, sequence_length, vocabulary_size, cls_id, sep_id, pad_id, mask_id,
    special_ids=None, random_start=5, mask_rate=0.15,
):
    """One epoch of MLM + NSP/SOP examples from tokenized documents.

    documents: list of documents, each a list of sentences as token-id lists. task: "nsp" or
    "sop". Returns ``(x, y, sample_weight)``: x = {token_ids, segment_ids, padding_mask,
    mask_positions}; y and sample_weight = {"mlm": (N, P), task: (N,)}.
    """
    from ptft_keras.pretraining import mask_tokens

    sample = {"nsp": sample_nsp_pairs, "sop": sample_sop_pairs}[task]
    pairs = sample(documents, rng)
    first = [list(documents[d][i]) for (d, i), _, _ in pairs]
    second = [list(documents[d][j]) for _, (d, j), _ in pairs]
    labels = np.array([label for _, _, label in pairs], "int32")
    token_ids, segment_ids, padding_mask = pack_sentence_pairs(
        first, second, sequence_length, cls_id, sep_id, pad_id
    )
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
class SentencePairPretrainer(keras.Model):
    """MLM + a sentence-pair task (NSP for BERT, SOP for ALBERT), trained jointly.

    inputs: the backbone's (token_ids, segment_ids, padding_mask; (B, S)) + mask_positions (B, P).
    outputs: {"mlm": (B, P, V) logits, task: (B, 2) logits}. The MLM head is tied to the token
    embedding; the pair head reads the backbone's pooled [CLS] vector (keras-hub BERT/ALBERT
    ``pooled_output``: a tanh Dense over position 0) or position 0 when there is none.
    Subclassed, like ``MaskedLMPretrainer``, so the shared embedding survives save/load.
    """

    def __init__(self, backbone, task="nsp", dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        if task not in ("nsp", "sop"):
            raise ValueError(f"task must be 'nsp' or 'sop', got {task!r}.")
        self.backbone = backbone
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

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            task=self.task,
            dropout=self.dropout,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


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


# --- T5 span corruption ---------------------------------------------------------------------------
def _random_segmentation(num_items, num_segments, rng):
    """Split ``num_items`` into ``num_segments`` positive lengths, every split equally likely:
    choose the num_segments - 1 cut points among the num_items - 1 gaps."""
    cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False) + 1)
    return np.diff(np.concatenate([[0], cuts, [num_items]])).astype(int)


def span_counts(length, noise_density=0.15, mean_span_length=3.0):
    """(number of noise tokens, number of noise spans) for a sequence of ``length`` tokens,
    as in the T5 paper: round(length x density) noise tokens (at least 1, at most length - 1)
    in round(noise / mean_span_length) spans (at least 1)."""
    num_noise = int(np.clip(np.round(length * noise_density), 1, length - 1))
    num_spans = max(1, int(np.round(num_noise / mean_span_length)))
    return num_noise, num_spans


def random_spans_noise_mask(length, rng, noise_density=0.15, mean_span_length=3.0):
    """Boolean (length,) mask of the tokens to drop, in contiguous spans.

    The sequence alternates non-noise and noise spans, starting with non-noise: both the noise
    and the non-noise tokens are split into ``num_spans`` random positive lengths.
    """
    num_noise, num_spans = span_counts(length, noise_density, mean_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    mask = np.zeros(length, bool)
    start = 0
    for keep, noise in zip(keep_lengths, noise_lengths):
        start += keep
        mask[start : start + noise] = True
        start += noise
    return mask


def apply_span_mask(tokens, noise_mask, sentinel_ids, eos_id=None):
    """Replace each noise span by one sentinel in the input; the target lists each sentinel
    followed by the span it hides (T5: "<X> span <Y> span ..."). EOS ends both if given.

    tokens: (L,) ids; noise_mask: (L,) bool. Returns (inputs, targets) as int32 arrays.
    """
    tokens = np.asarray(tokens)
    inputs, targets, span = [], [], -1
    for position, (token, noisy) in enumerate(zip(tokens, noise_mask)):
        if noisy:
            if position == 0 or not noise_mask[position - 1]:  # a span starts here
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"More spans than the {len(sentinel_ids)} sentinel ids given.")
                inputs.append(sentinel_ids[span])
                targets.append(sentinel_ids[span])
            targets.append(token)
        else:
            inputs.append(token)
    if eos_id is not None:
        inputs.append(eos_id)
        targets.append(eos_id)
    return np.asarray(inputs, "int32"), np.asarray(targets, "int32")


def span_corruption(tokens, sentinel_ids, seed=0, eos_id=None, noise_density=0.15,
                    mean_span_length=3.0):
    """T5 span corruption of one sequence, reproducible: the same seed gives the same spans.

    ``seed`` may also be a ``np.random.Generator``. Returns (inputs, targets) int32 arrays.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = random_spans_noise_mask(len(tokens), rng, noise_density, mean_span_length)
    return apply_span_mask(tokens, mask, sentinel_ids, eos_id)


def span_corruption_arrays(blocks, rng, sentinel_ids, eos_id, pad_id=0, noise_density=0.15,
                           mean_span_length=3.0):
    """One epoch of T5 inputs from equal-length token blocks (N, L).

    Equal lengths give equal noise and span counts, so every corrupted input has exactly
    L - noise + spans + 1 tokens and every target noise + spans + 1: no padding needed.
    Decoder inputs are the targets shifted right behind ``pad_id`` (T5's decoder start token).
    Returns ``(x, y, sample_weight)`` for ``Seq2SeqPretrainer`` (``T5Seq2SeqLM``'s format).
    """
    pairs = [
        span_corruption(block, sentinel_ids, rng, eos_id, noise_density, mean_span_length)
        for block in np.asarray(blocks)
    ]
    encoder = np.stack([inputs for inputs, _ in pairs])
    targets = np.stack([target for _, target in pairs])
    decoder = np.concatenate([np.full((len(targets), 1), pad_id, "int32"), targets[:, :-1]], 1)
    x = {
        "encoder_token_ids": encoder,
        "encoder_padding_mask": np.ones_like(encoder),
        "decoder_token_ids": decoder,
        "decoder_padding_mask": np.ones_like(decoder),
    }
    return x, targets, np.ones(targets.shape, "float32")


@keras.saving.register_keras_serializable(package="ptft_keras")
class Seq2SeqPretrainer(keras.Model):
    """A keras-hub ``T5Backbone`` + the tied LM head on the decoder: logits (B, T, V).

    inputs: encoder_token_ids, encoder_padding_mask (B, S), decoder_token_ids,
    decoder_padding_mask (B, T). The same computation as keras-hub's ``T5Seq2SeqLM`` (which
    reuses this backbone for ``generate``), but a plain ``keras.Model``: keras-hub tasks
    override ``fit``/``evaluate`` and do not accept a ``keras.utils.PyDataset``.
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs, training=False):
        x = self.backbone(inputs, training=training)["decoder_sequence_output"]
        if self.backbone.tie_embedding_weights:
            # T5 scales by d_model^-0.5 before a tied output projection (keeps logits O(1)).
            x = x * ops.cast(self.backbone.hidden_dim**-0.5, x.dtype)
        return self.backbone.token_embedding(x, reverse=True)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


# --- XLNet permutation language modelling -------------------------------------------------------
def permutation_masks(is_real, rng, num_predict):
    """Masks of one sequence for a random factorization order (1 = may attend).

    is_real: (S,) bool, False on padding. Only real tokens are permuted; padding is never
    attended to and never predicted. Returns a dict:

    - ``order`` (n,): positions in factorization order; ``rank`` (S,): each position's place
      in it (padding: S).
    - ``content_mask`` (S, S): i attends to j iff rank[j] <= rank[i] (earlier and itself).
      Padding rows attend to themselves only (keeps their softmax finite; nobody reads them).
    - ``query_mask`` (S, S): rank[j] < rank[i], strictly: the query stream of i knows i's
      position but not its token, which is what it must predict.
    - ``target_positions`` (K,): the last K = min(num_predict, n - 1) positions of the order
      (partial prediction: the first-in-order token has no context, so K < n).
    """
    is_real = np.asarray(is_real, bool)
    length = len(is_real)
    positions = np.flatnonzero(is_real)
    order = rng.permutation(positions)
    rank = np.full(length, length)
    rank[order] = np.arange(len(order))
    earlier_or_same = rank[None, :] <= rank[:, None]
    content = earlier_or_same & is_real[None, :]
    content |= np.diag(~is_real)
    query = (rank[None, :] < rank[:, None]) & is_real[None, :]
    num_targets = min(num_predict, max(len(order) - 1, 0))
    return {
        "order": order,
        "rank": rank,
        "content_mask": content.astype("float32"),
        "query_mask": query.astype("float32"),
        "target_positions": order[len(order) - num_targets :],
    }


def permutation_lm_arrays(token_ids, padding_mask, rng, num_predict):
    """One epoch of XLNet permutation-LM inputs for token ids (N, S) and padding mask (N, S).

    Returns ``(x, y, sample_weight)``: x = {token_ids, segment_ids, padding_mask (N, S),
    content_mask, query_mask (N, S, S), target_mapping (N, K, S)}, y = target ids (N, K),
    weights (N, K) (0 where a short sequence has fewer than K targets). ``target_mapping[k]``
    is the one-hot position of the k-th prediction, in factorization order.
    """
    token_ids = np.asarray(token_ids, "int32")
    padding_mask = np.asarray(padding_mask).astype(bool)
    n, length = token_ids.shape
    content = np.zeros((n, length, length), "float32")
    query = np.zeros((n, length, length), "float32")
    mapping = np.zeros((n, num_predict, length), "float32")
    targets = np.zeros((n, num_predict), "int32")
    weights = np.zeros((n, num_predict), "float32")
    for row in range(n):
        masks = permutation_masks(padding_mask[row], rng, num_predict)
        content[row], query[row] = masks["content_mask"], masks["query_mask"]
        where = masks["target_positions"]
        mapping[row, np.arange(len(where)), where] = 1.0
        targets[row, : len(where)] = token_ids[row, where]
        weights[row, : len(where)] = 1.0
    x = {
        "token_ids": token_ids,
        "segment_ids": np.zeros_like(token_ids),
        "padding_mask": padding_mask.astype("int32"),
        "content_mask": content,
        "query_mask": query,
        "target_mapping": mapping,
    }
    return x, targets, weights


@keras.saving.register_keras_serializable(package="ptft_keras")
class TiedOutput(keras.layers.Layer):
    """Logits = x @ E^T + b with E the (V, H) table of a plain ``keras.layers.Embedding``.

    (keras-hub's MaskedLMHead needs a ``ReversibleEmbedding``; XLNet's table is a plain one.)
    Built by the model that owns the embedding, so ``get_config`` carries no embedding.
    """

    def __init__(self, embedding, **kwargs):
        super().__init__(**kwargs)
        self.embedding = embedding

    def build(self, input_shape):
        self.bias = self.add_weight(
            shape=(self.embedding.input_dim,), initializer="zeros", name="bias"
        )

    def call(self, x):
        table = ops.cast(self.embedding.embeddings, x.dtype)
        return ops.matmul(x, ops.transpose(table)) + ops.cast(self.bias, x.dtype)


@keras.saving.register_keras_serializable(package="ptft_keras")
class PermutationLMPretrainer(keras.Model):
    """XLNet permutation language modelling with two-stream attention.

    Reuses every weight of a keras-hub ``XLNetBackbone`` (so the pre-trained backbone is then
    fine-tuned as is): its word embedding, its ``mask_emb`` vector (the query stream's initial
    state g: a position with no content), and its ``XLNetEncoder`` layers, whose relative
    attention already runs the two streams when given a query stream, a query mask and a
    target mapping. What the backbone lacks, and this model adds: the permutation masks as
    inputs, the query stream, and the LM head.

    inputs (see ``permutation_lm_arrays``): token_ids, segment_ids, padding_mask (B, S),
    content_mask, query_mask (B, S, S), target_mapping (B, K, S).
    output: logits (B, K, V) for the K target positions, from the query stream.

    Per layer: h <- Attn(Q = h, KV = h, content_mask)  (sees itself);
               g <- Attn(Q = g, KV = h, query_mask)    (sees only earlier-in-order content).
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.lm_head = TiedOutput(backbone.content_query_embedding.word_embed, name="lm_head")
        # XLNetBackbone overwrites its ``dropout`` layer attribute with the rate (a float).
        self.query_dropout = keras.layers.Dropout(backbone.dropout)

    def _relative_positions(self, batch, length):
        """(B, 2S, H) sinusoidal encodings of relative distances S, S-1, ..., -S+1.

        Computed with the backbone's own function, then transposed: the backbone's ``call``
        reshapes (2S, B, H) to (B, 2S, H) instead of transposing it, which scrambles the
        encodings of every sequence after the first when B > 1 (keras-hub 0.32).
        """
        embedding = self.backbone.content_query_embedding
        encoding = embedding.relative_positional_encoding(length, length, bsz=batch)
        return ops.transpose(encoding, (1, 0, 2))

    def call(self, inputs, training=False):
        backbone = self.backbone
        token_ids = inputs["token_ids"]
        batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        mapping = ops.cast(inputs["target_mapping"], self.compute_dtype)
        content = backbone.content_query_embedding.dropout_layer(
            backbone.content_query_embedding.word_embed(token_ids), training=training
        )
        mask_emb = ops.cast(backbone.attn_mask_layer.mask_emb, content.dtype)
        query = ops.broadcast_to(mask_emb, (batch, ops.shape(mapping)[1], backbone.hidden_dim))
        positions = self._relative_positions(batch, length)
        segments = backbone.seg_mat_layer(inputs["segment_ids"])
        for layer in backbone.transformer_layers:
            content, query = layer(
                output_content=content,
                attn_mask_content=inputs["content_mask"],
                attn_mask_query=inputs["query_mask"],
                pos_emb=positions,
                seg_mat=segments,
                output_query=query,
                target_mapping=mapping,
            )
        query = self.query_dropout(query, training=training)
        return self.lm_head(query)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
