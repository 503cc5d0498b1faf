"""Every custom layer of the course, each an ordinary serializable Keras 3 layer (``keras.ops``
only, so they run on the JAX backend too).

- ``MaskedMeanPooling``: (B, S, H), (B, S) -> (B, H), the mean over real tokens.
- ``SentenceEmbedding``: the same, L2-normalised (sentence-transformers).
- ``GradientReversal``: identity forward, -lambda x gradient backward (DANN).
- ``TiedOutput``: logits from a hidden state and a shared embedding matrix.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ptft_keras")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of the sequence over non-padding positions: (B, S, H), (B, S) -> (B, H)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # it consumes the mask: nothing downstream needs it

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, sequence, padding_mask):
        mask = ops.cast(ops.expand_dims(padding_mask, -1), sequence.dtype)
        total = ops.sum(sequence * mask, axis=1)
        # max(.., 1) keeps an all-padding row at zero instead of NaN.
        return total / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])



@keras.saving.register_keras_serializable(package="ptft_keras")
class SentenceEmbedding(MaskedMeanPooling):
    """Mean over the real (non-padding) tokens, then L2 normalisation: sentence-transformers.

    call(sequence_output (B, S, H), padding_mask (B, S) int or bool) -> (B, H).
    ``normalize=False`` gives the plain masked mean (the course's ``MaskedMeanPooling``).
    Build it with ``dtype="float32"`` under mixed precision: sums over tokens want float32.
    """

    def __init__(self, normalize=True, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.normalize = normalize
        self.epsilon = epsilon

    def call(self, sequence_output, padding_mask):
        pooled = super().call(sequence_output, padding_mask)  # (B, H)
        if self.normalize:
            norm = ops.sqrt(ops.sum(ops.square(pooled), axis=-1, keepdims=True))
            pooled = pooled / ops.maximum(norm, self.epsilon)
        return pooled

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape=None):
        return (sequence_output_shape[0], sequence_output_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(normalize=self.normalize, epsilon=self.epsilon)
        return config



# --- gradient reversal ---------------------------------------------------------------------------
@ops.custom_gradient
def _reverse_gradient(x, lambda_):
    """Identity forward; backward, the incoming gradient times -lambda_ (no gradient to lambda_)."""

    # Keras passes the upstream gradient positionally (TF, JAX) or as ``upstream`` (torch).
    def grad(*args, upstream=None):
        if upstream is None:
            (upstream,) = args
        return ops.negative(lambda_) * upstream, ops.zeros_like(lambda_)

    return ops.copy(x), grad


@keras.saving.register_keras_serializable(package="ptft_keras")
class GradientReversal(keras.layers.Layer):
    """Gradient reversal layer (Ganin & Lempitsky 2015): y = x, dL/dx = -lambda * dL/dy.

    Input and output: any shape, e.g. pooled features (B, H). ``lambda_`` is a non-trainable
    variable, so a callback (``DANNSchedule``) can change it during ``fit`` without re-tracing
    the train function, and it is saved with the model's weights.
    """

    def __init__(self, lambda_=1.0, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self._lambda = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(float(lambda_)),
            trainable=False, name="lambda",
        )
        self.built = True  # the one weight above does not depend on the input shape

    @property
    def lambda_(self):
        return float(ops.convert_to_numpy(self._lambda))

    @lambda_.setter
    def lambda_(self, value):
        self._lambda.assign(float(value))

    def call(self, inputs):
        # Read the variable here and pass its value in: TF's custom_gradient refuses functions
        # that read variables themselves unless their gradient handles those variables too.
        lambda_ = ops.cast(self._lambda, inputs.dtype)
        return _reverse_gradient(inputs, lambda_)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["lambda_"] = self.lambda_
        return config



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


