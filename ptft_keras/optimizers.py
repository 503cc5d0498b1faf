"""Learning-rate schedules and optimizers shared by pre-training and fine-tuning.

- ``WarmupLinearDecay``: linear warmup to a peak, then linear decay to 0 (BERT's schedule).
- ``layerwise_optimizer``: any Keras optimizer with a learning-rate multiplier per variable
  (what layer-wise learning-rate decay needs).
"""

import keras
from keras import ops

from ptft_keras import _compat


@keras.saving.register_keras_serializable(package="ptft_keras")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0.

    Warmup protects pre-trained weights from the large, noisy first updates of Adam (its
    second-moment estimate is still poor); the decay anneals to a stable end point.
    """

    def __init__(self, peak, warmup_steps, total_steps):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * step / max(self.warmup_steps, 1)
        decay_span = max(self.total_steps - self.warmup_steps, 1)
        decay = self.peak * ops.maximum(0.0, (self.total_steps - step) / decay_span)
        return ops.where(step < self.warmup_steps, warmup, decay)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }



class _LayerwiseLR:
    """Mixed into a Keras optimizer class: the learning rate of each variable times a multiplier.

    ``lr_multipliers``: {variable path: float}; unlisted variables use 1.0. The multiplier is
    looked up when the optimizer is built (by path) and applied in ``update_step`` (by variable),
    so it scales the step, and in ``_apply_weight_decay`` (decoupled decay is ``lr * wd * w``).
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in dict(lr_multipliers or {}).items()}
        self._multiplier_by_key = {}

    def build(self, variables):
        super().build(variables)
        for variable in variables:
            path = getattr(variable, "path", None)
            key = _compat.optimizer_var_key(self, variable)
            self._multiplier_by_key[key] = self.lr_multipliers.get(path, 1.0)

    def lr_multiplier(self, variable):
        return self._multiplier_by_key.get(_compat.optimizer_var_key(self, variable), 1.0)

    def update_step(self, gradient, variable, learning_rate):
        scale = self.lr_multiplier(variable)
        if scale != 1.0:
            learning_rate = ops.multiply(learning_rate, scale)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        # Overrides a private Keras hook: _make_layerwise checks it still exists
        # (_compat.check_apply_weight_decay_hook).
        if self.weight_decay is None:
            return
        for variable in variables:
            if _compat.optimizer_uses_weight_decay(self, variable):
                lr = ops.cast(self.learning_rate, variable.dtype) * self.lr_multiplier(variable)
                wd = ops.cast(self.weight_decay, variable.dtype)
                variable.assign(variable - variable * wd * lr)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config


def _make_layerwise(base):
    _compat.check_apply_weight_decay_hook(base)  # else our override would silently do nothing
    cls = type(f"Layerwise{base.__name__}", (_LayerwiseLR, base), {
        "__doc__": f"{base.__name__} with per-variable learning-rate multipliers (LLRD).",
        "__module__": __name__,
    })
    return keras.saving.register_keras_serializable(package="ptft_keras")(cls)


LAYERWISE_OPTIMIZERS = {
    base: _make_layerwise(base)
    for base in (
        keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW,
        keras.optimizers.RMSprop, keras.optimizers.Adagrad, keras.optimizers.Nadam,
        keras.optimizers.Adamax, keras.optimizers.Lion,
    )
}
globals().update({cls.__name__: cls for cls in LAYERWISE_OPTIMIZERS.values()})


def layerwise_optimizer(optimizer, lr_multipliers):
    """A copy of the (unbuilt) Keras ``optimizer`` whose per-variable learning rate is scaled.

    ``lr_multipliers``: {variable path: float}, e.g. from ``layerwise_lr_multipliers``. Returns
    e.g. a ``LayerwiseAdamW`` with the same config (learning-rate schedule included).
    """
    if isinstance(optimizer, _LayerwiseLR):
        base = type(optimizer).__mro__[2]
    else:
        base = type(optimizer)
    if base not in LAYERWISE_OPTIMIZERS:
        raise TypeError(
            f"No layer-wise version of {base.__name__}: supported are "
            f"{', '.join(b.__name__ for b in LAYERWISE_OPTIMIZERS)}."
        )
    if optimizer.built:
        raise ValueError("Pass an optimizer that has not been built (used) yet.")
    config = optimizer.get_config()
    config.pop("lr_multipliers", None)
    return LAYERWISE_OPTIMIZERS[base].from_config({**config, "lr_multipliers": lr_multipliers})

