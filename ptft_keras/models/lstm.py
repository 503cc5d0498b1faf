"""The recurrent backbone: ELMo/ULMFiT-style (Bi)LSTM encoder."""

import keras
import keras_hub
from keras import ops

from ptft_keras.models.transformer import check_sizes


@keras.saving.register_keras_serializable(package="ptft_keras")
class LSTMBackbone(keras_hub.models.Backbone):
    """A (Bi)LSTM encoder as a reusable backbone (ELMo/ULMFiT-style).

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
        dtype=None,
        **kwargs,
    ):
        check_sizes(vocabulary_size=vocabulary_size, embedding_dim=embedding_dim,
                    hidden_dim=hidden_dim, num_layers=num_layers)
        embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, embedding_dim, dtype=dtype, name="embeddings"
        )
        blocks = []
        for i in range(num_layers):
            lstm = keras.layers.LSTM(hidden_dim, return_sequences=True, dtype=dtype,
                                     name=f"lstm_{i}")
            if bidirectional:
                lstm = keras.layers.Bidirectional(lstm, dtype=dtype, name=f"block_{i}")
            blocks.append(lstm)

        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        # The LSTM must skip padding, not read it: pass the mask explicitly.
        mask = ops.not_equal(token_ids, 0)
        x = keras.layers.Dropout(dropout, dtype=dtype)(embedding(token_ids))  # (B, S, E)
        for block in blocks:
            x = block(x, mask=mask)
        super().__init__(inputs={"token_ids": token_ids}, outputs=x, dtype=dtype, **kwargs)

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
        config = super().get_config()  # name, trainable, dtype
        config.update(
            vocabulary_size=self.vocabulary_size,
            embedding_dim=self.embedding_dim,
            hidden_dim=self.hidden_dim,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
        )
        return config
