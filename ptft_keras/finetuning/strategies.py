"""Fine-tuning strategies: which weights learn, and how fast.

Every strategy works on our backbones (``blocks``) and on keras-hub's (``transformer_layers``);
``count_params`` / ``describe`` / ``strategy_report`` say how many parameters each one trains.

Which weights learn (``trainable`` flags; re-``compile`` after changing them):

- ``"head"``: freeze the whole backbone, train only the new head (a linear probe if the head is
  one Dense layer).
- ``"freeze_bottom"``: freeze the embeddings and the bottom ``k`` blocks; the top blocks and the
  head learn (lower layers hold general features, upper layers task-specific ones).
- ``"full"``: everything learns.
- ``"gradual"`` (ULMFiT, Howard & Ruder 2018): the ``GradualUnfreezing`` callback
  starts with only the head and unfreezes one more group per epoch, top block first, embeddings
  last.
- ``"lora"`` (Hu et al. 2021): ``apply_lora`` freezes the backbone and adds trainable low-rank
  updates ``W + (alpha/r)·A·B`` to the attention projections with Keras' own
  ``layer.enable_lora``; ``merge_lora`` folds them back into plain kernels.

How fast they learn:

- ``"llrd"`` (layer-wise learning-rate decay, a.k.a. discriminative learning rates): everything
  learns, but a group ``d`` steps below the head learns at ``base_lr * decay**d``.
  ``layerwise_optimizer`` does it inside the optimizer (no model rebuild): it scales the
  *learning rate* passed to each variable's update, not its gradient. The difference matters:
  Adam-style updates ``m/(sqrt(v)+eps)`` are invariant to the scale of the gradient, so scaling
  gradients by 0.1 leaves Adam's step (almost) unchanged; scaling the learning rate divides it by
  10, exactly like a separate "parameter group" in PyTorch. Decoupled weight decay (AdamW) is
  scaled with it, as in PyTorch's groups.

Keras facts these rely on (read in ``keras/src``, Keras 3.15, TensorFlow backend):

- ``Model.fit`` builds the optimizer once, on the variables trainable at that moment, and an
  optimizer refuses variables it was not built with ("Unknown variable"). Build it while
  everything that will ever learn is trainable (``GradualUnfreezing`` rebuilds it for you if it
  has not taken a step yet).
- The TensorFlow train function is a ``tf.function`` traced with the trainable variables of its
  first call; ``fit`` looks up ``model.train_function`` before every batch, so
  ``model.make_train_function(force=True)`` between epochs makes a new trainable set take effect.
- Keras' Adam counts steps globally (``optimizer.iterations``) for its bias correction, unlike
  PyTorch's per-parameter count: a group unfrozen at step ``t`` gets ``1/(1-beta**t) ~ 1`` instead
  of the large first-step correction, so its first steps are up to a few times larger than
  ``lr`` (``m`` and ``sqrt(v)`` are both still small, their ratio is not). A warmup or a smaller
  learning rate for late groups (LLRD) keeps those steps in check.
"""


import keras
import numpy as np
from keras import ops

from ptft_keras import _compat
from ptft_keras.optimizers import layerwise_optimizer

STRATEGIES = ("head", "freeze_bottom", "full")
ALL_STRATEGIES = ("head", "freeze_bottom", "full", "gradual", "llrd", "lora")
LORA_TARGETS = ("query", "value")


# --- which layers are which ----------------------------------------------------------------------
def backbone_blocks(backbone):
    """The backbone's layers that strategies freeze, bottom to top: [embeddings, block_0, ...].

    Works for ptft_keras backbones (``embedding_layers`` + ``transformer_layers`` or, for the
    LSTM, ``blocks``) and keras-hub backbones (``transformer_layers``; every other layer with
    weights counts as embedding).
    """
    if hasattr(backbone, "embedding_layers"):
        blocks = getattr(backbone, "transformer_layers", None) or backbone.blocks
        # A block's LocalMixing layer (if any) freezes and unfreezes with that block.
        local = list(getattr(backbone, "local_layers", None) or [None] * len(blocks))
        return [list(backbone.embedding_layers)] + [
            [block] + ([mixer] if mixer is not None else []) for block, mixer in zip(blocks, local)]
    if hasattr(backbone, "transformer_layers"):
        blocks = list(backbone.transformer_layers)
        block_ids = {id(layer) for layer in blocks}
        embeddings = [
            layer for layer in backbone.layers if layer.weights and id(layer) not in block_ids
        ]
        return [embeddings] + [[block] for block in blocks]
    raise TypeError(
        f"{type(backbone).__name__} has neither `blocks` (ptft_keras backbones) nor "
        f"`transformer_layers` (keras-hub backbones): cannot tell its layers apart."
    )


def group_names(backbone):
    """Names of ``backbone_blocks`` groups, bottom to top: ["embeddings", "block_0", ...]."""
    return ["embeddings"] + [group[0].name for group in backbone_blocks(backbone)[1:]]


def _set_groups_trainable(backbone, flags):
    """flags: one bool per group of ``backbone_blocks`` (bottom to top)."""
    groups = backbone_blocks(backbone)
    backbone.trainable = True
    for group, flag in zip(groups, flags):
        for layer in group:
            layer.trainable = bool(flag)


# --- head / freeze_bottom / full -------------------------------------------------------------------
def apply_strategy(backbone, strategy, k=None):
    """Set trainable flags on ``backbone`` for ``strategy`` in STRATEGIES; returns the backbone.

    ``k`` (freeze_bottom only): how many blocks above the embeddings to freeze, 0..num_blocks.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of {STRATEGIES}.")
    groups = backbone_blocks(backbone)
    # Undo an earlier strategy: setting the parent's flag does not reset its sub-layers'.
    backbone.trainable = True
    for group in groups:
        for layer in group:
            layer.trainable = True
    if strategy == "head":
        backbone.trainable = False
    elif strategy == "freeze_bottom":
        num_blocks = len(groups) - 1
        if k is None or not 0 <= k <= num_blocks:
            raise ValueError(
                f"freeze_bottom needs k between 0 and {num_blocks} (the backbone's number of "
                f"blocks), got k={k!r}."
            )
        for group in groups[: k + 1]:  # embeddings + bottom k blocks
            for layer in group:
                layer.trainable = False
    return backbone


def unfreeze_top(backbone, n):
    """Freeze the backbone except its top ``n`` groups (0 = head only; num_blocks+1 = all)."""
    num_groups = len(backbone_blocks(backbone))
    if not 0 <= n <= num_groups:
        raise ValueError(f"n must be between 0 and {num_groups} (the number of groups), got {n}.")
    _set_groups_trainable(backbone, [i >= num_groups - n for i in range(num_groups)])
    return backbone


def count_params(model):
    """(trainable, total) parameter counts of a built model."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total


def describe(model):
    """One line: 'trainable 12,345 of 1,234,567 parameters (1.0%)'."""
    trainable, total = count_params(model)
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / total:.1f}%)"


def strategy_report(model, backbone=None):
    """Dict: trainable / total parameters of ``model`` and, per backbone group, what trains."""
    trainable, total = count_params(model)
    report = {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}
    if backbone is not None:
        report["groups"] = {
            name: sum(int(np.prod(w.shape)) for layer in group for w in layer.trainable_weights)
            for name, group in zip(group_names(backbone), backbone_blocks(backbone))
        }
    return report


# --- gradual unfreezing ----------------------------------------------------------------------------
def _optimizer_keys(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer wraps one
    if not inner.built:
        return None
    return _compat.optimizer_variable_keys(inner)


def ensure_optimizer_covers(model, variables):
    """Make ``model.optimizer`` able to update ``variables`` (Keras only updates what it was built on).

    An unbuilt optimizer is built on ``variables``. A built one that misses some is replaced by a
    fresh copy (same config) built on them, which is only allowed before its first step: after
    that its moments would be lost, so that raises ValueError. Returns the optimizer in use.
    """
    optimizer = model.optimizer
    keys = _optimizer_keys(optimizer)
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if keys is None:
        optimizer.build(variables)
        return optimizer
    missing = [v for v in variables if _compat.optimizer_var_key(inner, v) not in keys]
    if not missing:
        return optimizer
    if int(ops.convert_to_numpy(optimizer.iterations)) > 0:
        raise ValueError(
            f"The optimizer has taken steps but was built without {len(missing)} variables that "
            f"must now learn (e.g. {missing[0].path}). Keras optimizers only update the variables "
            f"they were built on: compile a fresh optimizer while every layer that will ever "
            f"learn is trainable."
        )
    fresh = optimizer.__class__.from_config(optimizer.get_config())
    fresh.build(list(variables))
    model.optimizer = fresh
    return fresh


def _retrace(model):
    """Make a changed trainable set take effect in the next ``fit`` step (TF backend)."""
    model.make_train_function(force=True)
    # We did what Keras' "trainable state changed since compile" warning asks for.
    _compat.reset_compiled_trainable_state(model)


@keras.saving.register_keras_serializable(package="ptft_keras")
class GradualUnfreezing(keras.callbacks.Callback):
    """ULMFiT's gradual unfreezing: head only first, then one more backbone group per stage.

    Epochs ``0 .. epochs_per_stage-1`` train the head only; each later stage also trains the next
    group down: the top block, the one below, ..., and the embeddings last (unless
    ``unfreeze_embeddings=False``). Between stages the callback re-traces the train function so
    the new trainable set is used (a Keras train function keeps the set it was traced with), and
    before training it makes sure the optimizer holds state for every weight it will unfreeze.

    ``self.log`` records (epoch, trainable groups, trainable parameters) at every stage change.
    """

    def __init__(self, backbone, epochs_per_stage=1, unfreeze_embeddings=True, verbose=0):
        super().__init__()
        if epochs_per_stage < 1:
            raise ValueError(f"epochs_per_stage must be >= 1, got {epochs_per_stage}.")
        self.backbone = backbone
        self.epochs_per_stage = int(epochs_per_stage)
        self.unfreeze_embeddings = unfreeze_embeddings
        self.verbose = verbose
        self.stage = None
        self.log = []

    @property
    def max_stage(self):
        groups = len(backbone_blocks(self.backbone))
        return groups if self.unfreeze_embeddings else groups - 1

    def unfreezing_order(self):
        """Group names in the order they start learning (top block first)."""
        names = group_names(self.backbone)[::-1]
        return names[: self.max_stage]

    def _apply(self, stage):
        unfreeze_top(self.backbone, stage)
        self.stage = stage

    def on_train_begin(self, logs=None):
        if keras.backend.backend() == "jax":
            raise NotImplementedError(
                "GradualUnfreezing changes the trainable set between epochs, which the JAX "
                "trainer fixes when fit starts: use the TensorFlow (or torch) backend."
            )
        # Every weight that will ever learn must be known to the optimizer.
        self._apply(self.max_stage)
        ensure_optimizer_covers(self.model, self.model.trainable_variables)
        self._apply(0)
        self._record(0)
        _retrace(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        stage = min(epoch // self.epochs_per_stage, self.max_stage)
        if stage != self.stage:
            self._apply(stage)
            self._record(epoch)
            _retrace(self.model)

    def _record(self, epoch):
        trainable, total = count_params(self.model)
        names = group_names(self.backbone)
        learning = names[len(names) - self.stage :] if self.stage else []
        self.log.append({"epoch": epoch, "learning": learning, "trainable": trainable,
                         "total": total})
        if self.verbose:
            print(f"epoch {epoch}: head + {learning or 'nothing else'} "
                  f"({trainable:,} of {total:,} parameters)")

    def get_config(self):
        return {
            "epochs_per_stage": self.epochs_per_stage,
            "unfreeze_embeddings": self.unfreeze_embeddings,
            "verbose": self.verbose,
        }


# --- layer-wise learning-rate decay ----------------------------------------------------------------
def layerwise_lr_multipliers(backbone, decay, head=1.0):
    """{variable path: multiplier} for LLRD: a group d steps below the head gets decay**d.

    The head (everything outside the backbone) is depth 0 (multiplier ``head``, not listed),
    the top block depth 1, ..., the embeddings depth num_blocks + 1.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}.")
    groups = backbone_blocks(backbone)
    multipliers = {}
    for index, group in enumerate(groups):
        depth = len(groups) - index  # top block: 1, embeddings: len(groups)
        for layer in group:
            for variable in layer.weights:
                multipliers[variable.path] = float(head * decay**depth)
    return multipliers


def group_learning_rates(backbone, base_lr, decay):
    """[(group name, learning rate)] from the head down: what LLRD does, as a table."""
    names = group_names(backbone)
    rows = [("head", float(base_lr))]
    for depth, name in enumerate(reversed(names), start=1):
        rows.append((name, float(base_lr * decay**depth)))
    return rows




def llrd_optimizer(backbone, learning_rate, decay=0.8, optimizer="adamw", **kwargs):
    """Shortcut: ``layerwise_optimizer(keras.optimizers.get(optimizer)(lr, **kwargs), ...)``."""
    classes = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
               "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}
    if optimizer not in classes:
        raise ValueError(f"optimizer must be one of {sorted(classes)}, got {optimizer!r}.")
    base = classes[optimizer](learning_rate=learning_rate, **kwargs)
    return layerwise_optimizer(base, layerwise_lr_multipliers(backbone, decay))


# --- LoRA ----------------------------------------------------------------------------------------
def lora_layers(backbone, targets=LORA_TARGETS):
    """The backbone's layers named in ``targets`` that support ``enable_lora`` (Dense, EinsumDense)."""
    return [
        layer for layer in _compat.flatten_layers(backbone, include_self=False)
        if layer.name in targets and hasattr(layer, "enable_lora")
    ]


def apply_lora(backbone, rank=4, targets=LORA_TARGETS, alpha=None, train_bias=False):
    """Freeze ``backbone`` and add rank-``rank`` LoRA updates to its ``targets`` layers.

    Uses Keras' ``layer.enable_lora(rank, lora_alpha)``: the layer computes with
    ``kernel + (alpha/rank) * A @ B`` where A (.., rank) starts He-uniform, B (rank, out) at zero
    (so the model starts exactly as pre-trained) and only A and B learn (plus the bias if
    ``train_bias``). keras-hub attention projections are EinsumDense with kernel (H, heads, d):
    Keras factorizes the last axis only, A is (H, heads, rank), B (rank, d).
    Returns a dict: ``layers`` (names), ``trainable``, ``total`` (backbone parameters).
    Calling it again on the same backbone keeps the existing A and B.
    """
    layers = lora_layers(backbone, targets)
    if not layers:
        raise ValueError(
            f"No layer named one of {tuple(targets)} with enable_lora in "
            f"{type(backbone).__name__}: LoRA needs Dense/EinsumDense projections (attention "
            f"query/value in Transformers; an LSTM backbone has none)."
        )
    backbone.trainable = True
    for layer in _compat.flatten_layers(backbone, include_self=False):
        layer.trainable = False
    for layer in layers:
        layer.trainable = True  # sets every variable of the layer trainable ...
        if not layer.lora_enabled:
            layer.enable_lora(rank, lora_alpha=alpha)
        _compat.lora_base_kernel(layer).trainable = False  # ... so refreeze the base kernel
        if getattr(layer, "bias", None) is not None:
            layer.bias.trainable = bool(train_bias)
    trainable, total = count_params(backbone)
    return {"layers": [layer.path for layer in layers], "rank": rank,
            "trainable": trainable, "total": total}


def lora_delta(layer):
    """(alpha / rank) * A @ B: what LoRA adds to ``layer``'s frozen kernel."""
    return (layer.lora_alpha / layer.lora_rank) * ops.matmul(layer.lora_kernel_a,
                                                             layer.lora_kernel_b)


def merge_lora(backbone, in_place=False):
    """Fold LoRA into plain kernels: W_merged = W + (alpha/rank)·A·B.

    ``in_place=False`` (default): return a new backbone of the same class and config without
    LoRA, holding the merged weights (what you deploy: no extra matmuls, original size).
    ``in_place=True``: write W_merged into the kernels of ``backbone`` and zero B, so LoRA
    training can go on from the merged point; returns ``backbone``.
    Keras does the same merge when it saves a LoRA layer (``save_own_variables`` stores
    ``layer.kernel``, which is the merged kernel, and loading zeroes A and B).
    """
    layers = [
        layer for layer in _compat.flatten_layers(backbone, include_self=False)
        if getattr(layer, "lora_enabled", False)
    ]
    if not layers:
        raise ValueError("merge_lora: the backbone has no LoRA layer (run apply_lora first).")
    if in_place:
        for layer in layers:
            kernel = _compat.lora_base_kernel(layer)
            kernel.assign(ops.add(kernel, ops.cast(lora_delta(layer), kernel.dtype)))
            layer.lora_kernel_b.assign(ops.zeros(layer.lora_kernel_b.shape))
        return backbone
    merged_values = {}
    for layer in layers:
        kernel = _compat.lora_base_kernel(layer)
        merged_values[kernel.path] = ops.add(kernel, lora_delta(layer))
    source = {variable.path: variable for variable in backbone.weights}
    plain = type(backbone).from_config(backbone.get_config())
    for variable in plain.weights:
        if variable.path not in source:
            raise ValueError(f"merge_lora: {variable.path} has no counterpart in the backbone.")
        value = merged_values.get(variable.path, source[variable.path])
        variable.assign(ops.convert_to_numpy(value))
    return plain


# --- run one strategy ----------------------------------------------------------------------------
