"""The 1-D convolutional sensor encoder, its masked-reconstruction pre-trainer and fault classifier."""

import keras

from ptft_keras.data.sensors import CLASS_NAMES


# --- models --------------------------------------------------------------------------------------
def build_sensor_encoder(channels=3, width=32, dilations=(1, 2, 4, 8), kernel_size=5,
                         length=None, name="sensor_encoder"):
    """(B, L, C) -> (B, L, width): a stem convolution, then residual blocks of dilated
    convolutions. Dilations 1, 2, 4, 8 with kernel 5 see 61 steps, enough context to fill a
    masked span of 8 from the signal around it. Any length L unless ``length`` fixes it.

    No normalisation layer: a LayerNormalization per time step rescales every step to unit
    size and so discards the vibration amplitude, which is what tells imbalance from normal
    (measured here: lower accuracy for both pre-trained and scratch encoders).
    """
    series = keras.Input((length, channels), name="series")
    x = keras.layers.Conv1D(width, kernel_size, padding="same", name="stem")(series)
    for i, rate in enumerate(dilations):
        h = keras.layers.Conv1D(width, kernel_size, padding="same", dilation_rate=rate,
                                activation="gelu", name=f"block{i}_conv")(x)
        x = keras.layers.Add(name=f"block{i}_add")([x, h])
    return keras.Model(series, x, name=name)


def build_masked_pretrainer(encoder, name="masked_reconstruction"):
    """Encoder + per-step linear head back to the input channels: (B, L, C) -> (B, L, C)."""
    series = keras.Input(encoder.input.shape[1:], name="series")
    channels = encoder.input.shape[-1]
    recon = keras.layers.Conv1D(channels, 1, name="reconstruction")(encoder(series))
    return keras.Model(series, recon, name=name)


def compile_pretrainer(model, learning_rate=2e-3):
    """MSE over masked steps only: fit with (masked, target, weights), weights (B, L).

    Keras' MSE averages over channels, giving (B, L); "mean_with_sample_weight" then divides
    the weighted sum by the number of masked steps, not by B x L (which would shrink the loss
    by the mask rate and make it depend on it). Unmasked steps have weight 0: copying visible
    input to the output earns nothing.
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.MeanSquaredError(reduction="mean_with_sample_weight"),
    )
    return model


def build_fault_classifier(encoder, num_classes=len(CLASS_NAMES), dropout=0.1,
                           name="fault_classifier"):
    """Encoder -> mean and max over time (B, 2 x width) -> batch norm -> dropout -> logits.

    Max pooling keeps short events (bearing impacts) that an average would wash out. Batch
    normalisation puts every pooled feature on one scale, so the head learns in the few dozen
    full-batch steps that a handful of labels allow; momentum 0.8 lets its running statistics
    (used at prediction time) catch up within such a short run.
    """
    series = keras.Input(encoder.input.shape[1:], name="series")
    features = encoder(series)
    pooled = keras.layers.Concatenate(name="pool")([
        keras.layers.GlobalAveragePooling1D()(features), keras.layers.GlobalMaxPooling1D()(features)
    ])
    pooled = keras.layers.BatchNormalization(momentum=0.8, name="pool_norm")(pooled)
    pooled = keras.layers.Dropout(dropout)(pooled)
    logits = keras.layers.Dense(num_classes, name="head")(pooled)
    return keras.Model(series, logits, name=name)
