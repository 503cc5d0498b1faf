"""Data-parallel training with ``tf.distribute`` (chapter 5.1), runnable on one CPU.

Data parallelism: every replica holds a full copy of the model, gets 1/R of each global batch,
computes gradients on it, and the replicas all-reduce (sum) their gradients before the same
update is applied everywhere. Keras' ``fit`` does all of it once the model, its optimizer and its
metrics were created inside ``strategy.scope()``:

    from ptft_keras import distributed
    distributed.logical_cpus(2)                  # FIRST, before anything else touches TF
    strategy = distributed.get_strategy()        # MirroredStrategy over GPUs or logical CPUs
    with strategy.scope():
        model = build_and_compile()              # variables become MirroredVariables
    model.fit(x, y, batch_size=64)               # 64 = global batch: 32 per replica

Why the result equals single-device training: Keras computes each replica's mean loss over its
own 32 examples, divides it by the number of replicas R, and the gradients are summed across
replicas, so the update uses mean(replica means) = the mean over all 64 examples, exactly when
every replica gets the same number of examples. ``train_once`` measures it.

Several machines: ``MultiWorkerMirroredStrategy`` runs the same script on every machine, each
started with its own ``TF_CONFIG`` environment variable (see ``multi_worker_config``): the
cluster's addresses and this machine's index. Worker 0 is the "chief" (it writes checkpoints and
logs). Gradients are all-reduced over the network with collective ops (ring or NCCL).

This module is TensorFlow-only by nature (``tf.distribute``); the models stay plain Keras.
"""

import json
import time

import keras
import numpy as np
import tensorflow as tf

from ptft_keras import _compat

STRATEGY_KINDS = ("auto", "mirrored", "default")


# --- devices --------------------------------------------------------------------------------------
def logical_cpus(n=2):
    """Split the physical CPU into ``n`` logical devices; returns their names.

    TensorFlow fixes its device list the first time it runs anything, so this must be called
    first, before any other TensorFlow/Keras work. Calling it again with the same ``n`` is fine.
    The logical devices share the same cores: this shows how distribution works, not a speed-up.
    Does not itself initialise TensorFlow (so GPU memory growth can still be set after it).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of logical CPUs), got {n!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    names = [f"/device:CPU:{i}" for i in range(n)]
    if (current is None and n == 1) or (current is not None and len(current) == n):
        return names
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:
        have = 1 if current is None else len(current)
        raise RuntimeError(
            f"logical_cpus({n}) came too late: TensorFlow has already initialised its devices "
            f"(with {have} logical CPU{'s' if have > 1 else ''}) and cannot change them in this "
            f"process. Call logical_cpus({n}) first thing, right after the imports and before "
            f"any other TensorFlow/Keras work (creating a tensor, building a model, listing "
            f"logical devices). In a notebook: restart the kernel and run it in the first cell. "
            f"(TensorFlow said: {err})"
        ) from err
    return names


def get_strategy(kind="auto", devices=None):
    """A ``tf.distribute`` strategy.

    kind: ``"mirrored"``: MirroredStrategy over ``devices`` (default: every GPU, else every
    logical CPU); ``"default"``: TensorFlow's default strategy (one device, no replication);
    ``"auto"``: mirrored if there is a GPU or more than one logical CPU, default otherwise.
    On CPU devices the gradients are reduced with ``ReductionToOneDevice`` (copy to one device,
    add, broadcast), set explicitly: NCCL all-reduce exists only for GPUs. (TensorFlow 2.21
    itself picks ``CollectiveAllReduce`` for CPU-only devices, which gave the same weights in
    ``tests/_mirrored_check.py``; the explicit choice does not depend on that default.) On GPUs
    TensorFlow's own choice (NCCL) is kept.
    """
    if kind not in STRATEGY_KINDS:
        raise ValueError(f"Unknown strategy kind {kind!r}: one of {', '.join(STRATEGY_KINDS)}.")
    if kind == "default":
        return tf.distribute.get_strategy()
    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        if kind == "auto" and not gpus and len(devices) < 2:
            return tf.distribute.get_strategy()
    devices = list(devices)
    if not devices:
        raise ValueError("devices is empty: give at least one device name, e.g. '/cpu:0'.")
    on_cpu_only = all(tf.DeviceSpec.from_string(d).device_type == "CPU" for d in devices)
    cross_device_ops = tf.distribute.ReductionToOneDevice() if on_cpu_only else None
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)


def check_model_strategy(model, strategy):
    """Raise ValueError unless ``model`` (and every weight it has) was created inside
    ``strategy.scope()``.

    Keras (TF backend) records the strategy a model was constructed under and uses it in
    ``fit``; weights created outside the scope stay ordinary variables, which ``fit`` cannot
    update under the strategy (TensorFlow then fails deep inside with a ``colocate_vars_with``
    error). Checking first gives an error that says what to do.
    """
    fix = (
        "Create the model (backbone included) inside `with strategy.scope():`, then call "
        "this again with it."
    )
    # ``_distribute_strategy`` is where Keras keeps it; the public ``distribute_strategy``
    # property falls back to whatever strategy is current, so it cannot tell.
    owner = _compat.model_distribute_strategy(model)
    # A model made outside any scope belongs to TF's default strategy (recorded as None).
    default = not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()
    if owner is not strategy and not (owner is None and default):
        raise ValueError(f"The model was not created inside this strategy's scope. {fix}")
    outside = [
        w.path for w in model.weights
        if not strategy.extended.variable_created_in_scope(getattr(w, "value", w))
    ]
    if outside:
        shown = ", ".join(outside[:3]) + (" ..." if len(outside) > 3 else "")
        raise ValueError(
            f"{len(outside)} weights of the model were created outside the strategy's scope "
            f"({shown}): a layer or backbone built before entering it. {fix}"
        )


# --- single device vs. replicas -------------------------------------------------------------------
def demo_data(n=512, features=20, classes=3, seed=0):
    """A learnable classification set: x float32 (n, features), y int32 (n,) from a random
    linear teacher."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    teacher = rng.normal(size=(features, classes))
    return x, np.argmax(x @ teacher, axis=1).astype("int32")


def demo_model(features=20, classes=3, hidden=64, learning_rate=1e-2):
    """A compiled MLP without dropout or batch norm (both would make replicas differ from one
    device: dropout draws its own masks, batch norm normalises per replica batch)."""
    inputs = keras.Input((features,), name="x")
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(classes, name="logits")(h)
    model = keras.Model(inputs, logits, name="demo_mlp")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_once(strategy, build_model_fn, x, y, global_batch, epochs=1, seed=0):
    """Build (inside ``strategy.scope()``), train with ``fit`` and report; for comparing
    strategies on the same data.

    build_model_fn() -> a compiled Keras model (its default reduction, mean over the batch, is
    what makes replicas match one device). x: (N, ...) array, y: (N,). Data are not shuffled;
    N must be a multiple of ``global_batch`` and ``global_batch`` of the number of replicas,
    so every replica always gets the same number of examples (otherwise the mean of replica
    means is not the batch mean, and the comparison is not exact).
    Returns a dict: weights (list of arrays), initial_weights, losses (per epoch), seconds
    (fit only), replicas.
    """
    replicas = strategy.num_replicas_in_sync
    if len(x) % global_batch or global_batch % replicas:
        raise ValueError(
            f"For an exact comparison the {len(x)} examples must split into whole global "
            f"batches of {global_batch}, and each global batch into {replicas} equal replica "
            f"batches. Trim the data or pick a global_batch dividing it, divisible by {replicas}."
        )
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_model_fn()
    if not model.compiled:
        raise ValueError("build_model_fn must return a compiled model (compile it inside).")
    initial = [np.array(w) for w in model.get_weights()]
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=global_batch, epochs=epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return dict(
        weights=[np.array(w) for w in model.get_weights()], initial_weights=initial,
        losses=[float(v) for v in history.history["loss"]], seconds=seconds, replicas=replicas,
    )


def max_weight_difference(a, b):
    """Largest absolute difference between two lists of weight arrays."""
    if len(a) != len(b):
        raise ValueError(f"Different numbers of weights: {len(a)} and {len(b)}.")
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))


# --- several machines -----------------------------------------------------------------------------
def multi_worker_config(workers, index, task_type="worker"):
    """The ``TF_CONFIG`` JSON string for machine ``index`` of ``workers`` ("host:port" list).

    Start the same training script on every machine, each with its own
    ``TF_CONFIG=<this string>``, and create ``tf.distribute.MultiWorkerMirroredStrategy()``
    at the top of the script (before other TF work). Worker 0 is the chief. Every worker then
    builds the model in ``strategy.scope()`` and calls ``fit`` as above; a global batch of B is
    split over all replicas of all machines. Only the chief should write checkpoints and logs
    to the final location.
    """
    workers = list(workers)
    if not workers:
        raise ValueError("workers is empty: give one 'host:port' per machine.")
    for address in workers:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Worker address {address!r} is not 'host:port'.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"index must be an int in [0, {len(workers)}), got {index!r}.")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": task_type,
                                                               "index": index}})
