"""``Pretrainer``: what every pre-training objective's model shares, like keras-hub's ``Task``.

A pre-trainer holds a ``backbone`` and the objective's head. The base class owns the two things
they all do the same way:

- serialization: ``get_config`` / ``from_config`` carry the backbone, so a ``.keras`` file of a
  pre-trainer reloads with its backbone (after ``from ptft_keras import objectives``);
- compiling: a pre-trainer compiles itself on construction with the course's defaults for its
  objective (``compile_defaults``), so ``fit`` works at once; ``compile(...)`` overrides any of
  them, and a reloaded file gets back the optimizer, loss and metrics it was saved with.
"""

import keras

from ptft_keras import _compat


class Pretrainer(keras.Model):
    """Base class of the course's pre-trainers (one level deep, no further hierarchy).

    Subclasses call ``super().__init__(backbone, **kwargs)``, build their head, then
    ``self._compile_on_construction(compile)``; they override ``compile_defaults`` where their
    loss differs from masked-token cross-entropy.
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def _compile_on_construction(self, compile):
        if compile:
            self.compile()

    def compile_defaults(self, learning_rate, weight_decay):
        """{optimizer, loss, weighted_metrics}: AdamW, token cross-entropy over the predicted
        positions only (divided by their count, so exp(loss) is a perplexity), accuracy."""
        from ptft_keras.objectives.mlm import mlm_compile_defaults

        return mlm_compile_defaults(learning_rate, weight_decay, metric_name="accuracy")

    def compile(self, optimizer="auto", loss="auto", weighted_metrics="auto", learning_rate=1e-3,
                weight_decay=0.01, jit_compile="auto", **kwargs):
        """``keras.Model.compile`` with this objective's defaults for every "auto" argument.

        ``learning_rate`` / ``weight_decay`` shape the "auto" AdamW only. Other keyword
        arguments (``loss_weights``, ``metrics``, ...) go to ``keras.Model.compile``.
        """
        defaults = self.compile_defaults(learning_rate, weight_decay)
        chosen = {"optimizer": optimizer, "loss": loss, "weighted_metrics": weighted_metrics}
        for key, value in chosen.items():
            if isinstance(value, str) and value == "auto":
                chosen[key] = defaults.get(key)
        defaults.pop("optimizer", None), defaults.pop("loss", None)
        defaults.pop("weighted_metrics", None)
        super().compile(**chosen, jit_compile=jit_compile, **{**defaults, **kwargs})

    def get_compile_config(self):
        return _compat.compile_config_with_state(self, super().get_compile_config())

    def compile_from_config(self, config):
        _compat.restore_compile(self, config)

    def get_config(self):
        config = super().get_config()
        config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
