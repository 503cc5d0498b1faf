"""Every private Keras / keras-hub hook ptft_keras relies on, in one place.

Keras 3 has no public API for a few things the course needs (which variables an optimizer
was built on, the LoRA base kernel of a Dense layer, the feed-forward layer inside a keras-hub
``TransformerEncoder`` ...). Each such access is one small function here, with a docstring
saying what it relies on and in which version it was read, and ``tests/test_compat.py`` has one
test per hook that fails loudly (naming the hook and the installed versions) when an upgrade
removes or changes it. Nothing else in the package touches a private Keras attribute.

Read in keras 3.15.1 and keras-hub 0.32.0 (TensorFlow backend), ``keras/src`` and
``keras_hub/src``. This module imports neither: it only touches the objects it is given.
"""

from importlib import metadata

READ_IN = {"keras": "3.15.1", "keras-hub": "0.32.0"}


def installed_versions():
    """'keras X, keras-hub Y' as installed (for error messages), without importing either."""
    found = []
    for name in ("keras", "keras-hub"):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _broken(hook, what):
    """RuntimeError naming the hook, what changed and the versions (read in vs installed)."""
    read_in = ", ".join(f"{k} {v}" for k, v in READ_IN.items())
    return RuntimeError(
        f"ptft_keras._compat.{hook}: {what}. This private Keras hook was read in {read_in}; "
        f"installed: {installed_versions()}. Update ptft_keras/_compat.py for this version."
    )


# --- layers ---------------------------------------------------------------------------------------
def flatten_layers(layer, include_self=True):
    """Every sub-layer of ``layer``, recursively (``layer`` first if ``include_self``).

    Relies on ``Layer._flatten_layers(include_self=True, recursive=True)``
    (keras/src/layers/layer.py, keras 3.15.1): a breadth-first walk of ``layer._layers`` that
    visits each layer once. ``Model.layers`` is not a substitute: it lists direct children only.
    """
    return layer._flatten_layers(include_self=include_self)


def reset_compiled_trainable_state(model):
    """Record the current ``trainable`` flags as "the state at compile time".

    Relies on ``Trainer._compiled_trainable_state`` (keras/src/trainers/trainer.py, keras
    3.15.1): ``compile`` stores {layer: layer.trainable for layer in model._flatten_layers()}
    and ``fit`` / ``evaluate`` warn ("A layer's `trainable` state has changed since the model
    was compiled") when the flags differ (``_warn_if_trainable_state_changed``; in 3.15.1 its
    call in ``_assert_compile_called`` sits after a ``raise``, so it does not fire yet). After
    re-tracing the train function we did what the warning asks for, so we update the record.
    A model that was never compiled has no record: nothing to do.
    """
    if hasattr(model, "_compiled_trainable_state"):
        model._compiled_trainable_state = {
            layer: layer.trainable for layer in flatten_layers(model)
        }


def lora_base_kernel(layer):
    """The frozen, pre-trained kernel variable of a LoRA-enabled Dense / EinsumDense layer.

    Relies on ``Dense._kernel`` / ``EinsumDense._kernel`` (keras/src/layers/core/dense.py and
    einsum_dense.py, keras 3.15.1): the variable ``build`` creates. Once ``enable_lora`` ran,
    the public ``layer.kernel`` is the *merged* value ``_kernel + (alpha/rank) * A @ B`` (a
    tensor, not a variable), so freezing or assigning the base weights needs ``_kernel``.
    """
    return layer._kernel


def transformer_encoder_intermediate_dense(block):
    """The first feed-forward Dense (hidden -> intermediate, with the activation) of a block.

    Relies on ``TransformerEncoder._feedforward_intermediate_dense``
    (keras_hub/src/layers/modeling/transformer_encoder.py, keras-hub 0.32.0): a
    ``keras.layers.Dense(intermediate_dim, activation=self.activation)`` created in ``build``;
    ``call`` applies it, reading its ``activation`` attribute at run time.
    """
    return block._feedforward_intermediate_dense


# --- optimizers -----------------------------------------------------------------------------------
def optimizer_var_key(optimizer, variable):
    """The key under which ``optimizer`` files ``variable`` (stable for the variable's life).

    Relies on ``BaseOptimizer._var_key`` (keras/src/optimizers/base_optimizer.py: ``id(v)``;
    keras/src/backend/tensorflow/optimizer.py: the tf.Variable's ``_unique_id``, through
    distributed containers), keras 3.15.1. Distinct variables get distinct keys.
    """
    return optimizer._var_key(variable)


def optimizer_variable_keys(optimizer):
    """Set of ``optimizer_var_key`` of every variable a built ``optimizer`` can update.

    Relies on ``BaseOptimizer._trainable_variables_indices`` (keras/src/optimizers/
    base_optimizer.py, keras 3.15.1): ``build(variables)`` fills it with
    {_var_key(v): index}; ``apply`` refuses a variable whose key is missing ("Unknown
    variable").
    """
    return set(optimizer._trainable_variables_indices)


def optimizer_uses_weight_decay(optimizer, variable):
    """Whether ``optimizer`` applies its (decoupled) weight decay to ``variable``.

    Relies on ``BaseOptimizer._use_weight_decay(variable) -> bool`` (keras/src/optimizers/
    base_optimizer.py, keras 3.15.1): False for variables excluded with
    ``exclude_from_weight_decay`` (by variable or by name pattern), True otherwise.
    """
    return optimizer._use_weight_decay(variable)


def check_apply_weight_decay_hook(base):
    """Raise unless the optimizer class ``base`` still has ``_apply_weight_decay(variables)``.

    ``optimizers._LayerwiseLR`` overrides ``_apply_weight_decay`` to scale decoupled weight
    decay by each variable's learning-rate multiplier. That relies on ``BaseOptimizer.apply``
    calling ``self._apply_weight_decay(trainable_variables)`` before the update step
    (keras/src/optimizers/base_optimizer.py; the TensorFlow backend's
    ``TFOptimizer._apply_weight_decay`` overrides it), keras 3.15.1. If Keras renamed it, the
    override would silently do nothing and decay would ignore the multipliers. Returns ``base``.
    """
    hook = getattr(base, "_apply_weight_decay", None)
    if not callable(hook):
        raise _broken(
            "check_apply_weight_decay_hook",
            f"{base.__name__} has no method _apply_weight_decay(variables), which "
            f"optimizers._LayerwiseLR overrides to scale weight decay per variable",
        )
    return base


def model_distribute_strategy(model):
    """The ``tf.distribute`` strategy ``model`` was created under, or None (default strategy).

    Relies on ``TensorFlowTrainer._distribute_strategy`` (keras/src/backend/tensorflow/
    trainer.py, keras 3.15.1): set in ``__init__`` to ``tf.distribute.get_strategy()`` inside a
    strategy scope, None outside. The public ``distribute_strategy`` property falls back to the
    current strategy, so it cannot tell where the model was made.
    """
    return getattr(model, "_distribute_strategy", None)


# --- compile state of models that override ``compile`` ------------------------------------------
def compile_config_with_state(model, config):
    """``get_compile_config`` for a model with its own ``compile``: also record whether the
    optimizer was built, i.e. whether the saved file holds optimizer slots (only after training).
    """
    if config and model.optimizer is not None:
        config["optimizer_built"] = bool(model.optimizer.built)
    return config


def restore_compile(model, config):
    """``compile_from_config`` for a model with its own ``compile``.

    Keras 3.15 (``keras/src/saving/saving_lib.py``, ``_load_state``/``compile_from_config`` in
    ``trainers/trainer.py``) skips restoring the compile state of a model whose ``compile`` is
    overridden, with a warning; the saved config holds concrete objects (no "auto"), so
    recompiling with it restores the optimizer, loss and metrics. The optimizer is built only
    when the saved one was, or Keras warns that the saved variable counts differ.
    """
    import keras

    config = dict(config)
    optimizer_built = config.pop("optimizer_built", True)
    model.compile(**keras.saving.deserialize_keras_object(config))
    if optimizer_built and model.built:
        model.optimizer.build(model.trainable_variables)
