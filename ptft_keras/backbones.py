"""Backbones: the networks that pre-training trains and fine-tuning reuses.

Both are Functional Keras models built in ``__init__`` (the keras-hub discipline): they show up in
``summary()``, their layers can be frozen one by one, and ``get_config`` returns the constructor
arguments so ``.keras`` files reload after ``import ptft_keras``.

Input: ``{"token_ids": int32 (batch, seq)}`` with 0 = [PAD]. Output: (batch, seq, hidden).
Both expose ``token_embedding`` (for MLM heads tied to it) and ``blocks`` (bottom to top, for
freezing strategies), the same names keras-hub's backbones use where they have them.
"""

import keras
import keras_hub
from keras import ops


@keras.saving.register_keras_serializable(package="ptft_keras")
class TransformerBackbone(keras.Model):
    """A small BERT-style encoder built from keras-hub layers.

    token ids (B, S) -> token + position embedding (B, S, H) -> LayerNorm -> N x encoder block
    -> (B, S, H). Padding positions (id 0) are masked out of attention.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length=128,
        num_layers=2,
        hidden_dim=128,
        num_heads=4,
        intermediate_dim=512,
        dropout=0.1,
        **kwargs,
    ):
        embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size=vocabulary_size,
            sequence_length=sequence_length,
            embedding_dim=hidden_dim,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embeddings",
        )
        norm = keras.layers.LayerNormalization(epsilon=1e-12, name="embeddings_norm")
        blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=intermediate_dim,
                num_heads=num_heads,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=1e-12,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = ops.not_equal(token_ids, 0)
        x = keras.layers.Dropout(dropout)(norm(embedding(token_ids)))
        for block in blocks:
            x = block(x, padding_mask=padding_mask)
        super().__init__(inputs={"token_ids": token_ids}, outputs=x, **kwargs)

        self.vocabulary_size = vocabulary_size
        self.sequence_length = sequence_length
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.token_embedding = embedding.token_embedding
        self.embedding_layers = [embedding, norm]
        self.blocks = blocks

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "num_layers": self.num_layers,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="ptft_keras")
class LSTMBackbone(keras.Model):
    """The book's recurrent baseline as a reusable backbone.

    token ids (B, S) -> embedding (B, S, E) -> N x (Bi)LSTM -> (B, S, H) with H = hidden_dim
    (x2 if bidirectional). The embedding is reversible so an MLM head can be tied to it.
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=128,
        hidden_dim=64,
        num_layers=1,
        bidirectional=True,
        dropout=0.1,
        **kwargs,
    ):
        embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, embedding_dim, name="embeddings"
        )
        blocks = []
        for i in range(num_layers):
            lstm = keras.layers.LSTM(hidden_dim, return_sequences=True, name=f"lstm_{i}")
            if bidirectional:
                lstm = keras.layers.Bidirectional(lstm, name=f"block_{i}")
            blocks.append(lstm)

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        # The LSTM must skip padding, not read it: pass the mask explicitly.
        mask = ops.not_equal(token_ids, 0)
        x = keras.layers.Dropout(dropout)(embedding(token_ids))
        for block in blocks:
            x = block(x, mask=mask)
        super().__init__(inputs={"token_ids": token_ids}, outputs=x, **kwargs)

        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.token_embedding = embedding
        self.embedding_layers = [embedding]
        self.blocks = blocks

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def sequence_output(outputs):
    """The (B, S, H) tensor of a backbone's output: ours return it, keras-hub's return a dict
    (T5's: the encoder's output)."""
    if isinstance(outputs, dict):
        # T5 (encoder-decoder): a classifier reads the encoder's view of the text.
        key = "sequence_output" if "sequence_output" in outputs else "encoder_sequence_output"
        return outputs[key]
    return outputs
