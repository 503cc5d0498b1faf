"""Causal language modelling (GPT): next-token prediction, exact perplexity, sampling."""


import keras
import keras_hub
import numpy as np
from keras import ops

from ptft_keras.models.classifier import sequence_output
from ptft_keras.objectives.base import Pretrainer


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
class CausalLMPretrainer(Pretrainer):
    """A decoder backbone + an output layer tied to its token embedding.

    inputs: the backbone's (keras-hub GPT-2: ``token_ids``, ``padding_mask``, each (B, S)).
    output: next-token logits (B, S, V). The backbone's ``token_embedding`` must be a keras-hub
    ``ReversibleEmbedding`` (its ``reverse=True`` call is the tied projection h @ E^T).
    """

    def __init__(self, backbone, compile=True, **kwargs):
        super().__init__(backbone, **kwargs)
        self._compile_on_construction(compile)

    def call(self, inputs, training=False):
        x = sequence_output(self.backbone(inputs, training=training))
        return self.backbone.token_embedding(x, reverse=True)


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


