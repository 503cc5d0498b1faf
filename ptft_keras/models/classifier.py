"""ONE classifier builder for every backbone, and class probabilities from its logits.

``build_classifier`` returns a Functional model: the backbone's inputs -> pooled (B, H) ->
dropout -> Dense -> logits (B, num_classes). Logits, not probabilities, because the loss is more
stable computed from logits; ``predict_proba`` applies the softmax for evaluation.
"""

import keras
import numpy as np
from keras import ops

from ptft_keras.layers import MaskedMeanPooling


def _as_inputs(x):
    return x if isinstance(x, dict) else {"token_ids": np.asarray(x)}


def sequence_output(outputs):
    """The (B, S, H) tensor of a backbone's output: ours return it, keras-hub's return a dict
    (T5's: the encoder's output)."""
    if isinstance(outputs, dict):
        # T5 (encoder-decoder): a classifier reads the encoder's view of the text.
        key = "sequence_output" if "sequence_output" in outputs else "encoder_sequence_output"
        return outputs[key]
    return outputs


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



def predict_proba(model, x, batch_size=256):
    """Class probabilities (B, C) from a logits model."""
    logits = model.predict(_as_inputs(x), batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype("float32"), axis=-1))

