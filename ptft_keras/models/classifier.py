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


def backbone_inputs(backbone):
    """Fresh symbolic inputs matching ``backbone``'s input dict (ours or keras-hub's)."""
    return {
        name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
        for name, tensor in backbone.input.items()
    }


def pooled_features(backbone, inputs, pooling="mean"):
    """Backbone output pooled to one vector per text: (B, S, H) -> (B, H).

    "mean": mean over the real tokens (keras-hub's ``padding_mask`` / T5's
    ``encoder_padding_mask`` if the inputs have one, else token id != 0), in float32 so sums over
    tokens keep their range under mixed precision; "cls": the first token's hidden state.
    """
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}.")
    x = sequence_output(backbone(inputs))  # (B, S, H)
    if pooling == "cls":
        return x[:, 0, :]
    padding_mask = inputs.get("padding_mask", inputs.get("encoder_padding_mask"))
    if padding_mask is None:
        padding_mask = ops.not_equal(inputs["token_ids"], 0)
    return MaskedMeanPooling(dtype="float32", name="mean_pool")(x, padding_mask)


def build_classifier(backbone, num_classes=2, pooling="mean", dropout=0.1, name="classifier"):
    """Backbone + head: the ONE classifier builder of the course, for any backbone.

    Inputs: whatever the backbone takes (ours: {"token_ids": (B, S)}; keras-hub's BERT/MiniLM:
    token_ids, segment_ids, padding_mask; a family's: ``families.classification_inputs``).
    pooling: "mean" (default) or "cls". Output: float32 logits (B, num_classes).
    """
    if (isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer))
            or num_classes < 2):
        raise ValueError(f"num_classes must be an int of at least 2, got {num_classes!r}: a "
                         f"yes/no task has num_classes=2 (softmax over two logits).")
    inputs = backbone_inputs(backbone)
    pooled = pooled_features(backbone, inputs, pooling)
    pooled = keras.layers.Dropout(dropout, name="head_dropout")(pooled)
    # float32 logits even under mixed precision: the softmax in the loss needs the range.
    logits = keras.layers.Dense(int(num_classes), name="head", dtype="float32")(pooled)
    return keras.Model(inputs, logits, name=name)


def predict_proba(model, x, batch_size=256):
    """Class probabilities (B, C) from a logits model."""
    logits = model.predict(_as_inputs(x), batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits.astype("float32"), axis=-1))

