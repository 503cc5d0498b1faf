"""One test per private Keras / keras-hub hook in ``ptft_keras._compat``.

Each checks that the private attribute still exists AND still behaves the way the package
relies on, on the installed versions. A failure names the hook and the versions: after a
Keras or keras-hub upgrade, it says which function of ``_compat.py`` to fix.
"""

import inspect
import warnings

import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from ptft_keras import _compat, optimizers
from ptft_keras.models import TransformerBackbone
from ptft_keras.models.minilm import MiniLMBackbone, exact_gelu_float32


def where(hook, private):
    """Assertion-message prefix: which hook broke, on which versions."""
    read_in = ", ".join(f"{k} {v}" for k, v in _compat.READ_IN.items())
    return (f"_compat.{hook} relies on private `{private}` (read in {read_in}; installed "
            f"{_compat.installed_versions()}): ")


def two_variables():
    return (keras.Variable(np.ones((2, 3), "float32"), name="kernel"),
            keras.Variable(np.ones((3,), "float32"), name="bias"))


@pytest.fixture(scope="module")
def tiny_backbone():
    return TransformerBackbone(vocabulary_size=50, max_sequence_length=8, num_layers=1,
                               hidden_dim=16, num_heads=2, intermediate_dim=32, dropout=0.0)


# --- layers ---------------------------------------------------------------------------------------
def test_flatten_layers(tiny_backbone):
    msg = where("flatten_layers", "Layer._flatten_layers(include_self, recursive)")
    assert hasattr(tiny_backbone, "_flatten_layers"), msg + "the method is gone"
    with_self = _compat.flatten_layers(tiny_backbone)
    without = _compat.flatten_layers(tiny_backbone, include_self=False)
    assert with_self[0] is tiny_backbone and tiny_backbone not in without, (
        msg + "include_self no longer puts the layer first / leaves it out")
    assert len({id(layer) for layer in without}) == len(without), msg + "a layer is listed twice"
    # Recursive: the attention projections nested inside the encoder block (what LoRA targets).
    names = [layer.name for layer in without]
    assert "query" in names and "value" in names, (
        msg + f"nested sub-layers (attention query/value) are not listed: {names}")
    assert set(tiny_backbone.layers) <= set(without), msg + "direct children are missing"


def test_reset_compiled_trainable_state():
    msg = where("reset_compiled_trainable_state", "Trainer._compiled_trainable_state")
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    state = getattr(model, "_compiled_trainable_state", None)
    assert isinstance(state, dict), msg + "compile() no longer records it"
    assert state == {layer: layer.trainable for layer in _compat.flatten_layers(model)}, (
        msg + "it is no longer {layer: trainable} over _flatten_layers()")
    # Keras compares the record with the current flags in _warn_if_trainable_state_changed
    # (in 3.15.1 _assert_compile_called's call to it sits after a `raise`, so fit never warns;
    # call it directly to check the contract the record is for).
    check = getattr(model, "_warn_if_trainable_state_changed", None)
    assert callable(check), msg + "Trainer._warn_if_trainable_state_changed, its reader, is gone"

    def warns():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check()
        return any("trainable" in str(w.message) for w in caught)

    assert not warns(), msg + "Keras warns although no flag changed"
    hidden.trainable = False
    assert warns(), msg + "Keras no longer warns when a trainable flag changed after compile"
    hidden.trainable = True
    model.compile(optimizer="sgd", loss="mse")
    hidden.trainable = False
    _compat.reset_compiled_trainable_state(model)
    assert model._compiled_trainable_state[hidden] is False, msg + "the record was not updated"
    assert not warns(), msg + "updating the record no longer silences the warning"


def test_lora_base_kernel_dense():
    msg = where("lora_base_kernel", "Dense._kernel")
    layer = keras.layers.Dense(4)
    layer.build((None, 3))
    layer.enable_lora(2, lora_alpha=4.0)
    kernel = getattr(layer, "_kernel", None)
    assert isinstance(_compat.lora_base_kernel(layer), keras.Variable), (
        msg + f"Dense has no _kernel variable (got {type(kernel).__name__})")
    assert not kernel.trainable, msg + "enable_lora no longer freezes _kernel"
    assert tuple(layer.lora_kernel_a.shape) == (3, 2), msg + "lora_kernel_a shape changed"
    assert tuple(layer.lora_kernel_b.shape) == (2, 4), msg + "lora_kernel_b shape changed"
    assert layer.lora_enabled and layer.lora_rank == 2 and layer.lora_alpha == 4.0, (
        msg + "lora_enabled / lora_rank / lora_alpha changed")
    trainable = {id(v) for v in layer.trainable_weights}
    assert id(kernel) not in trainable and id(layer.lora_kernel_a) in trainable, (
        msg + "only A and B (and the bias) should train")
    layer.lora_kernel_b.assign(np.full((2, 4), 0.5, "float32"))
    merged = ops.convert_to_numpy(kernel) + 2.0 * ops.convert_to_numpy(
        ops.matmul(layer.lora_kernel_a, layer.lora_kernel_b))
    np.testing.assert_allclose(ops.convert_to_numpy(layer.kernel), merged, rtol=1e-5, atol=1e-6,
                               err_msg=msg + "public `kernel` is no longer _kernel + a/r·A·B")


def test_lora_base_kernel_einsum_dense(tiny_backbone):
    # keras-hub attention projections are EinsumDense with kernel (H, heads, head_dim).
    msg = where("lora_base_kernel", "EinsumDense._kernel")
    layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4), bias_axes="de")
    layer.build((None, 5, 6))
    layer.enable_lora(3)
    kernel = _compat.lora_base_kernel(layer)
    assert isinstance(kernel, keras.Variable) and tuple(kernel.shape) == (6, 2, 4), (
        msg + "EinsumDense has no (6, 2, 4) _kernel variable")
    assert not kernel.trainable, msg + "enable_lora no longer freezes _kernel"
    # The same holds inside our backbone (kernel.path is what merge_lora matches on).
    query = next(layer for layer in _compat.flatten_layers(tiny_backbone) if layer.name == "query")
    base = _compat.lora_base_kernel(query)
    assert base.path in {v.path for v in tiny_backbone.weights}, (
        msg + "the backbone's query _kernel is not one of its weights")


def test_transformer_encoder_intermediate_dense():
    msg = where("transformer_encoder_intermediate_dense",
                "keras_hub TransformerEncoder._feedforward_intermediate_dense")
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2, dropout=0.0)
    x = np.random.default_rng(0).normal(size=(1, 3, 4)).astype("float32")
    before = ops.convert_to_numpy(block(x))
    dense = getattr(block, "_feedforward_intermediate_dense", None)
    assert isinstance(dense, keras.layers.Dense) and dense.units == 8, (
        msg + f"not a Dense(intermediate_dim) (got {dense!r})")
    assert _compat.transformer_encoder_intermediate_dense(block) is dense
    dense.activation = lambda t: t * 0.0  # call must read the activation at run time
    after = ops.convert_to_numpy(block(x))
    assert not np.allclose(before, after), (
        msg + "changing its activation after build no longer changes the block's output")
    # What MiniLMBackbone does with it, on a tiny BertBackbone.
    bert = MiniLMBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                          intermediate_dim=16, max_sequence_length=8)
    inner = _compat.transformer_encoder_intermediate_dense(bert.transformer_layers[0])
    assert inner.activation is exact_gelu_float32, msg + "MiniLM's exact GELU was not swapped in"


# --- optimizers -----------------------------------------------------------------------------------
def test_optimizer_var_key():
    msg = where("optimizer_var_key", "BaseOptimizer._var_key")
    optimizer = keras.optimizers.Adam()
    kernel, bias = two_variables()
    optimizer.build([kernel, bias])
    assert callable(getattr(optimizer, "_var_key", None)), msg + "the method is gone"
    key = _compat.optimizer_var_key(optimizer, kernel)
    assert key == _compat.optimizer_var_key(optimizer, kernel), msg + "the key is not stable"
    assert key != _compat.optimizer_var_key(optimizer, bias), msg + "two variables share a key"
    assert hash(key) is not None
    # A layer-wise optimizer keys its multipliers the same way.
    layerwise = optimizers.layerwise_optimizer(keras.optimizers.Adam(), {kernel.path: 0.5})
    layerwise.build([kernel, bias])
    assert layerwise.lr_multiplier(kernel) == 0.5 and layerwise.lr_multiplier(bias) == 1.0, (
        msg + "multipliers looked up by key no longer find their variable")


def test_optimizer_variable_keys():
    msg = where("optimizer_variable_keys", "BaseOptimizer._trainable_variables_indices")
    optimizer = keras.optimizers.Adam()
    assert getattr(optimizer, "_trainable_variables_indices", None) == {}, (
        msg + "an unbuilt optimizer no longer has it, empty")
    kernel, bias = two_variables()
    optimizer.build([kernel, bias])
    keys = _compat.optimizer_variable_keys(optimizer)
    expected = {_compat.optimizer_var_key(optimizer, v) for v in (kernel, bias)}
    assert keys == expected, msg + f"it does not cover exactly the built variables: {keys}"
    other = keras.Variable(np.ones((2,), "float32"), name="other")
    assert _compat.optimizer_var_key(optimizer, other) not in keys
    # The behaviour ensure_optimizer_covers guards against: unknown variables are refused.
    with pytest.raises(ValueError, match="Unknown variable"):
        optimizer.apply([ops.ones((2,))], [other])


def test_optimizer_uses_weight_decay():
    msg = where("optimizer_uses_weight_decay", "BaseOptimizer._use_weight_decay")
    optimizer = keras.optimizers.AdamW(weight_decay=0.1)
    kernel, bias = two_variables()
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build([kernel, bias])
    assert callable(getattr(optimizer, "_use_weight_decay", None)), msg + "the method is gone"
    assert _compat.optimizer_uses_weight_decay(optimizer, kernel) is True, (
        msg + "a plain variable is no longer decayed")
    assert _compat.optimizer_uses_weight_decay(optimizer, bias) is False, (
        msg + "exclude_from_weight_decay(var_names=...) is no longer honoured")


@pytest.mark.parametrize("base", list(optimizers.LAYERWISE_OPTIMIZERS), ids=lambda b: b.__name__)
def test_apply_weight_decay_hook_exists(base):
    msg = where("check_apply_weight_decay_hook", f"{base.__name__}._apply_weight_decay")
    assert _compat.check_apply_weight_decay_hook(base) is base
    params = list(inspect.signature(base._apply_weight_decay).parameters)
    assert params == ["self", "variables"], msg + f"its signature changed: {params}"


def test_apply_weight_decay_hook_is_called_by_apply():
    # The override must be what ``apply`` calls: decay scaled by each variable's multiplier.
    msg = where("check_apply_weight_decay_hook", "BaseOptimizer.apply -> _apply_weight_decay")
    kernel, bias = two_variables()
    optimizer = optimizers.layerwise_optimizer(
        keras.optimizers.SGD(learning_rate=0.1, weight_decay=0.1), {kernel.path: 0.5})
    optimizer.build([kernel, bias])
    optimizer.apply([ops.zeros(kernel.shape), ops.zeros(bias.shape)], [kernel, bias])
    np.testing.assert_allclose(ops.convert_to_numpy(kernel), 1 - 0.1 * 0.1 * 0.5, rtol=1e-6,
                               err_msg=msg + "the override is not used (multiplier ignored)")
    np.testing.assert_allclose(ops.convert_to_numpy(bias), 1 - 0.1 * 0.1, rtol=1e-6,
                               err_msg=msg + "decoupled decay changed")


def test_apply_weight_decay_check_fails_loudly():
    class NoHook:
        pass

    with pytest.raises(RuntimeError, match=r"_apply_weight_decay.*keras 3\.15\.1.*installed"):
        _compat.check_apply_weight_decay_hook(NoHook)


# --- tf.distribute --------------------------------------------------------------------------------
def test_model_distribute_strategy():
    import tensorflow as tf

    msg = where("model_distribute_strategy", "TensorFlowTrainer._distribute_strategy")
    outside = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert hasattr(outside, "_distribute_strategy"), msg + "the attribute is gone"
    assert _compat.model_distribute_strategy(outside) is None, (
        msg + "a model made outside any scope no longer records None")
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        inside = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert _compat.model_distribute_strategy(inside) is strategy, (
        msg + "a model made in a scope no longer records that strategy")
