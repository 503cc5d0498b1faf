"""Every custom layer of the course, each an ordinary serializable Keras 3 layer (``keras.ops``
only, so they run on the JAX backend too).

- ``MaskedMeanPooling``: (B, S, H), (B, S) -> (B, H), the mean over real tokens.
- ``SentenceEmbedding``: the same, L2-normalised (sentence-transformers).
- ``GradientReversal``: identity forward, -lambda x gradient backward (DANN).
- ``TiedOutput``: logits from a hidden state and a shared embedding matrix.
- ``LocalMixing``: a residual depthwise convolution over neighbouring tokens (a locality prior).
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




@keras.saving.register_keras_serializable(package="ptft_keras")
class LocalMixing(keras.layers.Layer):
    """x + DepthwiseConv1D(LayerNorm(x)) over ``kernel_size`` neighbouring tokens: (B, S, H) -> (B, S, H).

    A locality prior for small Transformers (as in ConvBERT, Jiang et al. 2020, and Primer, So et
    al. 2021): from the first step every position sees its neighbours, which a randomly
    initialised attention layer must first learn to look at. Padding (``padding_mask`` 0) is
    zeroed before the convolution so it never leaks into real tokens. The kernel starts at zero,
    so a new layer is the identity and training decides how much local mixing to use.
    """

    def __init__(self, kernel_size=3, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.epsilon = epsilon
        self.norm = keras.layers.LayerNormalization(epsilon=epsilon, dtype=self.dtype_policy,
                                                    name="norm")
        self.conv = keras.layers.DepthwiseConv1D(
            self.kernel_size, padding="same", depthwise_initializer="zeros",
            dtype=self.dtype_policy, name="conv")

    def build(self, x_shape, padding_mask_shape=None):
        self.norm.build(x_shape)
        self.conv.build(x_shape)

    def call(self, x, padding_mask=None):
        h = self.norm(x)
        if padding_mask is not None:
            h = h * ops.cast(ops.expand_dims(padding_mask, -1), h.dtype)
        return x + self.conv(h)

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, epsilon=self.epsilon)
        return config
