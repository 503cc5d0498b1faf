"""ONE way to train the same compiled model many times, each run starting like a fresh one.

Experiments repeat a run for every (arm, budget, seed). Compiling a new model per run pays
TensorFlow's graph tracing again (1-2 s on a laptop CPU, as much as a small run itself), so the
runs share one compiled model and restore its starting state instead. The state is *all* the
model's variables, not only ``get_weights()``: a Dropout layer's seed-generator state is a
variable too, and a run that skipped it would draw other dropout masks than a fresh model. The
optimizer's variables (step count, moment estimates) are restored as well.
"""

import numpy as np


class ModelSnapshot:
    """The variables of a compiled ``model`` and of its optimizer, to restore before each run.

    ``restore()`` puts back the state at construction; ``restore(values)`` puts back ``values``
    (a list with one array per ``model.variables``, e.g. ``snapshot_values(other_model)``).
    """

    def __init__(self, model):
        if model.optimizer is None:
            raise ValueError("Compile the model before taking a snapshot of it.")
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self.model = model
        self.values = snapshot_values(model)
        self.optimizer_values = [np.array(v.numpy()) for v in model.optimizer.variables]

    def restore(self, values=None):
        values = self.values if values is None else values
        variables = self.model.variables
        if len(values) != len(variables):
            raise ValueError(f"{len(values)} values for {len(variables)} variables: the model "
                             f"they came from has another architecture.")
        for variable, value in zip(variables, values):
            if tuple(variable.shape) != tuple(np.shape(value)):
                raise ValueError(f"variable {variable.path} {tuple(variable.shape)} does not "
                                 f"fit a value of shape {np.shape(value)}.")
            variable.assign(value)
        for variable, value in zip(self.model.optimizer.variables, self.optimizer_values):
            variable.assign(value)
        return self.model


def snapshot_values(model):
    """Copies of all of ``model``'s variables (weights, non-trainable state, seed generators)."""
    return [np.array(v.numpy()) for v in model.variables]
