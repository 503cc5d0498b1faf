"""The course's Transformer encoder: a small BERT built from keras-hub layers.

A ``keras_hub.models.Backbone`` (Functional, built in ``__init__``), with keras-hub's argument and
attribute names: ``max_sequence_length``, ``transformer_layers``, ``token_embedding``; ``dtype``
is part of its config. It saves and reloads as ``.keras`` after ``from ptft_keras import models``.

Input: ``{"token_ids": int32 (batch, seq)}`` with 0 = [PAD]. Output: (batch, seq, hidden).
"""

import keras
import keras_hub
import numpy as np
from keras import ops

from ptft_keras.layers import LocalMixing


def check_sizes(**sizes):
    """Raise ValueError unless every given size is a positive int (before any layer is built)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}"
                             + (": pass tok.vocabulary_size()" if name == "vocabulary_size" else "")
                             + ".")


@keras.saving.register_keras_serializable(package="ptft_keras")
class TransformerBackbone(keras_hub.models.Backbone):
    """A small BERT-style encoder built from keras-hub layers.

    token ids (B, S) -> token + position embedding (B, S, H) -> LayerNorm -> N x encoder block
    -> (B, S, H). Padding positions (id 0) are masked out of attention.

    ``normalize_first=True`` gives pre-LN blocks (LayerNorm before attention and feed-forward)
    and a final LayerNorm on the output, the variant that trains stably at high learning rates.
    ``local_kernel_size=k`` (k > 0) puts a ``layers.LocalMixing`` (residual depthwise
    convolution over k neighbouring tokens) before every block: a locality prior that gets a
    small encoder off the unigram plateau in far fewer steps (chapter 3's recipe sweep).

    Example:
    >>> backbone = TransformerBackbone(vocabulary_size=100, max_sequence_length=8,
    ...                                num_layers=1, hidden_dim=16, num_heads=2,
    ...                                intermediate_dim=32)
    >>> backbone({"token_ids": keras.ops.ones((2, 8), "int32")}).shape
    (2, 8, 16)
    """

    def __init__(
        self,
        vocabulary_size,
        max_sequence_length=128,
        num_layers=2,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        normalize_first=False,
        local_kernel_size=0,
        dtype=None,
        **kwargs,
    ):
        check_sizes(vocabulary_size=vocabulary_size, max_sequence_length=max_sequence_length,
                    num_layers=num_layers, hidden_dim=hidden_dim, num_heads=num_heads,
                    intermediate_dim=intermediate_dim)
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}: "
                             f"each head gets hidden_dim / num_heads dimensions.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        # === Layers ===
        embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size,
            sequence_length=max_sequence_length,
            embedding_dim=hidden_dim,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=dtype,
            name="embeddings",
        )
        norm = keras.layers.LayerNormalization(epsilon=1e-12, dtype=dtype, name="embeddings_norm")
        transformer_layers = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=intermediate_dim,
                num_heads=num_heads,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=1e-12,
                normalize_first=normalize_first,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        local_layers = []
        if local_kernel_size:
            local_layers = [
                LocalMixing(local_kernel_size, dtype=dtype, name=f"local_{i}")
                for i in range(num_layers)
            ]
        final_norm = None
        if normalize_first:
            final_norm = keras.layers.LayerNormalization(
                epsilon=1e-12, dtype=dtype, name="final_norm")

        # === Functional model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = ops.not_equal(token_ids, 0)
        x = keras.layers.Dropout(dropout, dtype=dtype)(norm(embedding(token_ids)))  # (B, S, H)
        for i, block in enumerate(transformer_layers):
            if local_layers:
                x = local_layers[i](x, padding_mask=padding_mask)
            x = block(x, padding_mask=padding_mask)
        if final_norm is not None:
            x = final_norm(x)
        super().__init__(inputs={"token_ids": token_ids}, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.normalize_first = normalize_first
        self.local_kernel_size = local_kernel_size
        self.token_embedding = embedding.token_embedding
        self.embedding_layers = [embedding, norm]
        self.transformer_layers = transformer_layers
        self.local_layers = local_layers

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype
        config.update(
            vocabulary_size=self.vocabulary_size,
            max_sequence_length=self.max_sequence_length,
            num_layers=self.num_layers,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            normalize_first=self.normalize_first,
            local_kernel_size=self.local_kernel_size,
        )
        return config
