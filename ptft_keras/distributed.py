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
``worker_main`` is such a script (``scripts/multiworker.py`` calls it)::

    python scripts/multiworker.py --workers host1:port,host2:port --index I   # on machine I
    python scripts/multiworker.py --local 2      # both workers on this machine, then compared

and ``run_local_workers(2)`` starts two CPU-only worker processes on 127.0.0.1 and returns how
far the chief's final weights are from one device trained on the same global batch (about
1.5e-7). Keras 3's ``fit`` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so ``train_multi_worker`` writes out the loop ``fit`` would run; ``worker_dataset`` gives every
worker its share of each global batch.

All GPUs of one machine: ``config.distribute_strategy()`` (MirroredStrategy over every GPU in
FULL mode when there are several, None otherwise) is what to pass as ``distribute_strategy=``.

This module is TensorFlow-only by nature (``tf.distribute``); the models stay plain Keras.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def _build_in_scope(strategy, build_model_fn, n_examples, global_batch, seed):
    """The seeded, compiled model built inside ``strategy.scope()`` (optimizer slots too, so
    they are mirrored), its initial weights and the number of replicas."""
    replicas = strategy.num_replicas_in_sync
    _check_exact_split(n_examples, global_batch, replicas)
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_model_fn()
        if not model.compiled:
            raise ValueError("build_model_fn must return a compiled model (compile it inside).")
        model.optimizer.build(model.trainable_variables)
    return model, [np.array(w) for w in model.get_weights()], replicas


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
    model, initial, replicas = _build_in_scope(strategy, build_model_fn, len(x), global_batch, seed)
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


# --- several processes, actually run --------------------------------------------------------------
INPUT_MODES = ("shards", "auto_shard")
COMMUNICATIONS = ("ring", "nccl", "auto")
MULTI_WORKER_DEFAULTS = dict(examples=512, global_batch=64, epochs=3, seed=0)
_WORKER_CHILD = ("import sys; from ptft_keras.distributed import worker_main; "
                 "sys.exit(worker_main(sys.argv[1:]))")


def free_ports(n, host="127.0.0.1"):
    """``n`` distinct TCP ports free on ``host`` right now: each is bound to port 0 (the OS picks
    a free one), read, and released. Another program could take one before a worker binds it,
    but the window is milliseconds."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of ports), got {n!r}.")
    sockets = []
    try:
        for _ in range(n):  # all bound at once, so the OS cannot hand out the same one twice
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def multi_worker_strategy(communication="ring"):
    """``MultiWorkerMirroredStrategy`` for the cluster in ``$TF_CONFIG``: the process's first
    TensorFlow work (it starts this worker's gRPC server and fixes the devices).

    communication: "ring" (gRPC collectives: CPUs, or GPUs without NCCL), "nccl" (GPUs),
    "auto" (TensorFlow picks). Every worker blocks here until all workers of the cluster are up.
    """
    implementations = tf.distribute.experimental.CommunicationImplementation
    choice = {"ring": implementations.RING, "nccl": implementations.NCCL,
              "auto": implementations.AUTO}
    if communication not in choice:
        raise ValueError(f"Unknown communication {communication!r}: one of "
                         f"{', '.join(COMMUNICATIONS)}.")
    if not os.environ.get("TF_CONFIG"):
        raise ValueError("TF_CONFIG is not set: set it to multi_worker_config(workers, index) "
                         "(one 'host:port' per machine, this machine's index) before calling.")
    options = tf.distribute.experimental.CommunicationOptions(implementation=choice[communication])
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _check_exact_split(n_examples, global_batch, replicas):
    if n_examples % global_batch or global_batch % replicas:
        raise ValueError(
            f"For an exact comparison the {n_examples} examples must split into whole global "
            f"batches of {global_batch}, and each global batch into {replicas} equal replica "
            f"batches. Trim the data or pick a global_batch dividing it, divisible by {replicas}."
        )


def worker_dataset(strategy, x, y, global_batch, input_mode="shards"):
    """This worker's part of the training data, as a ``tf.distribute`` dataset: global step k
    uses exactly the examples ``[k * global_batch, (k + 1) * global_batch)``, as one device with
    ``fit(x, y, batch_size=global_batch, shuffle=False)`` does. Every worker calls it with the
    same ``x``, ``y``; replica r of R gets ``b = global_batch / R`` of those examples, so the
    replicas' batches together are the global batch.

    input_mode "shards": each worker keeps only its own rows of every global batch (worker w of
    W: rows ``[w*b*R/W, (w+1)*b*R/W)``) and batches them per replica
    (``strategy.distribute_datasets_from_function``: the function gets this worker's
    ``InputContext``, sharding off); nothing is read twice. "auto_shard": every worker builds the
    whole dataset batched at the *global* batch with ``auto_shard_policy=DATA``, and
    ``strategy.experimental_distribute_dataset`` splits each global batch into R replica batches
    of which each worker keeps its own: simplest, but every worker reads all the data.
    """
    if input_mode not in INPUT_MODES:
        raise ValueError(f"Unknown input_mode {input_mode!r}: one of {', '.join(INPUT_MODES)}.")
    _check_exact_split(len(x), global_batch, strategy.num_replicas_in_sync)
    if input_mode == "auto_shard":
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return strategy.experimental_distribute_dataset(dataset.with_options(options))

    steps = len(x) // global_batch

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        local = context.num_replicas_in_sync // context.num_input_pipelines  # replicas here
        rows = slice(context.input_pipeline_id * local * per_replica,
                     (context.input_pipeline_id + 1) * local * per_replica)
        mine_x = x.reshape((steps, global_batch) + x.shape[1:])[:, rows].reshape(
            (-1,) + x.shape[1:])
        mine_y = y.reshape((steps, global_batch) + y.shape[1:])[:, rows].reshape(
            (-1,) + y.shape[1:])
        dataset = tf.data.Dataset.from_tensor_slices((mine_x, mine_y)).batch(per_replica)
        options = tf.data.Options()  # already this worker's share: no further sharding
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return dataset.with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


def train_multi_worker(strategy, build_model_fn, x, y, global_batch, epochs=1, seed=0,
                       input_mode="shards"):
    """``train_once`` for ``MultiWorkerMirroredStrategy``: every worker calls it with the same
    arguments and gets the same result. Returns the same dict as ``train_once``, plus
    local_examples: how many examples this worker's replicas took in one epoch.

    The same seed on every worker (the strategy also broadcasts the chief's initial values);
    data from ``worker_dataset``. The loop is written out instead of ``model.fit``, because
    Keras 3 ``fit`` does not run under MultiWorkerMirroredStrategy (3.15 here;
    keras-team/keras#20585 and tensorflow/tensorflow#72388, open: it reduces the first batch's
    ``(x, y)`` tuple and each step's scalar logs along axis 0, both refused by the strategy).
    Each step is what ``fit``'s ``train_step`` does: on every replica, the compiled loss over
    its ``b`` examples (Keras' loss divides the replica's mean by R inside a strategy), the
    gradients, and ``optimizer.apply_gradients``, which sums them over all replicas of all
    workers (ring all-reduce) before the same Adam update everywhere:
    sum over replicas of mean_r / R = the mean over the global batch, as on one device.
    """
    model, initial, replicas = _build_in_scope(strategy, build_model_fn, len(x), global_batch, seed)
    dataset = worker_dataset(strategy, x, y, global_batch, input_mode)

    def replica_step(x_batch, y_batch):
        with tf.GradientTape() as tape:
            y_pred = model(x_batch, training=True)
            loss = model.compute_loss(x=x_batch, y=y_batch, y_pred=y_pred, training=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    @tf.function
    def train_step(batch):
        per_replica_loss = strategy.run(replica_step, args=batch)
        return strategy.reduce("SUM", per_replica_loss, axis=None)  # the global batch's mean

    steps = len(x) // global_batch
    losses, local_examples = [], 0
    start = time.perf_counter()
    for epoch in range(epochs):
        iterator, step_losses = iter(dataset), []
        for _ in range(steps):
            batch = next(iterator)
            if epoch == 0:  # examples this worker's replicas see: its share, not everything
                local_examples += sum(int(t.shape[0])
                                      for t in strategy.experimental_local_results(batch[0]))
            step_losses.append(float(train_step(batch)))
        losses.append(float(np.mean(step_losses)))
    seconds = time.perf_counter() - start
    return dict(
        weights=[np.array(w) for w in model.get_weights()], initial_weights=initial,
        losses=losses, seconds=seconds, replicas=replicas, local_examples=local_examples,
    )


def _save_results(path, results):
    """One ``.npz`` holding named ``train_once``-style results (weights, initial weights, meta)."""
    arrays, meta = {}, {}
    for name, result in results.items():
        arrays.update({f"{name}.weight_{i:03d}": w for i, w in enumerate(result["weights"])})
        arrays.update({f"{name}.initial_{i:03d}": w
                       for i, w in enumerate(result["initial_weights"])})
        meta[name] = {k: v for k, v in result.items() if k not in ("weights", "initial_weights")}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def _load_results(path):
    with np.load(path) as data:
        results = json.loads(str(data["meta"]))
        for name, result in results.items():
            for kind, key in (("weight", "weights"), ("initial", "initial_weights")):
                prefix = f"{name}.{kind}_"
                result[key] = [data[k] for k in sorted(data.files) if k.startswith(prefix)]
    return results


def _worker_copy_path(out, index):
    out = Path(out)
    return out.with_name(f"{out.stem}.worker{index}{out.suffix or '.npz'}")


def _tail(path, chars=3000):
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _input_modes(input_modes):
    modes = (input_modes,) if isinstance(input_modes, str) else tuple(input_modes)
    if not modes or any(m not in INPUT_MODES for m in modes) or len(set(modes)) < len(modes):
        raise ValueError(f"input_modes must be distinct names from {', '.join(INPUT_MODES)}, "
                         f"got {input_modes!r}.")
    return modes


def run_local_workers(n=2, timeout=150, examples=512, global_batch=64, epochs=3, seed=0,
                      input_modes=INPUT_MODES, communication="ring", out_dir=None):
    """Train ``demo_model`` with ``MultiWorkerMirroredStrategy`` on ``n`` worker processes of this
    machine and compare the chief's final weights with one device at the same global batch.

    Each worker is a fresh Python running ``worker_main`` with its own ``TF_CONFIG`` (a cluster
    of ``127.0.0.1:<port>``, ports found free just before), CPU only (``CUDA_VISIBLE_DEVICES=""``),
    ring (gRPC) all-reduce. Each trains once per input mode (``worker_dataset``); the chief then
    also trains the same model on one device (TF's default strategy) in its own process. All
    must finish within ``timeout`` seconds: otherwise, or as soon as one fails, all are killed
    and TimeoutError / RuntimeError shows that worker's output. Files go to ``out_dir`` (a
    temporary directory when None): ``weights.npz`` (the chief), ``weights.worker<i>.npz``,
    ``worker_<i>.log``.

    Returns a dict: max_weight_difference (chief vs one device, largest over the input modes),
    differences ({input mode: that difference}), replica_difference (largest difference of any
    worker's final weights from the chief's), initial_difference (chief's initial weights vs
    the one-device run's), weight_change (how far training moved the one-device weights),
    losses ({input mode or "single": per-epoch mean loss}), seconds (wall time from starting
    the processes to the last one ending), train_seconds ({input mode: the chief's training
    loop}), workers (addresses), local_examples (examples per epoch each worker saw, for each
    input mode: ``examples / n`` each), replicas, global_batch, per_worker_batch.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of worker processes), got {n!r}.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    if communication not in COMMUNICATIONS:
        raise ValueError(f"Unknown communication {communication!r}: one of "
                         f"{', '.join(COMMUNICATIONS)}.")
    modes = _input_modes(input_modes)
    _check_exact_split(examples, global_batch, n)
    workers = [f"127.0.0.1:{port}" for port in free_ports(n)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    env.pop("TF_CONFIG", None)
    for name in ("http_proxy", "https_proxy", "grpc_proxy", "all_proxy"):
        env.pop(name, None)  # gRPC would send even 127.0.0.1 through a proxy
        env.pop(name.upper(), None)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    common = ["--workers", ",".join(workers), "--examples", str(examples),
              "--global-batch", str(global_batch), "--epochs", str(epochs), "--seed", str(seed),
              "--input", ",".join(modes), "--communication", communication]

    with tempfile.TemporaryDirectory(prefix="ptft_multiworker_") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "weights.npz"
        processes, logs = [], [folder / f"worker_{i}.log" for i in range(n)]
        start = time.perf_counter()
        try:
            for i in range(n):
                extra = ["--compare"] if i == 0 else []
                with open(logs[i], "w") as handle:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-c", _WORKER_CHILD, *common, "--index", str(i),
                         "--out", str(out), *extra],
                        env=env, stdout=handle, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL))
            deadline = start + timeout
            while any(p.poll() is None for p in processes):
                failed = [i for i, p in enumerate(processes) if p.poll() not in (None, 0)]
                if failed:
                    raise RuntimeError(
                        f"worker {failed[0]} exited with code {processes[failed[0]].returncode};"
                        f" the others were stopped. Its output ends with:\n"
                        f"{_tail(logs[failed[0]])}")
                if time.perf_counter() > deadline:
                    late = [i for i, p in enumerate(processes) if p.poll() is None]
                    raise TimeoutError(
                        f"worker(s) {late} did not finish within {timeout} s (all stopped). "
                        f"Each worker waits for all the others: check that 127.0.0.1 ports can "
                        f"be used. Output of worker {late[0]} ends with:\n{_tail(logs[late[0]])}")
                time.sleep(0.1)
            seconds = time.perf_counter() - start
            for i, process in enumerate(processes):
                if process.returncode:
                    raise RuntimeError(f"worker {i} exited with code {process.returncode}. Its "
                                       f"output ends with:\n{_tail(logs[i])}")
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        chief = _load_results(out)
        copies = [_load_results(_worker_copy_path(out, i)) for i in range(1, n)]
    single = chief["single"]
    differences = {m: max_weight_difference(chief[m]["weights"], single["weights"])
                   for m in modes}
    return dict(
        max_weight_difference=max(differences.values()), differences=differences,
        replica_difference=max([max_weight_difference(chief[m]["weights"], c[m]["weights"])
                                for c in copies for m in modes], default=0.0),
        initial_difference=max(max_weight_difference(chief[m]["initial_weights"],
                                                     single["initial_weights"]) for m in modes),
        weight_change=max_weight_difference(single["weights"], single["initial_weights"]),
        losses={name: r["losses"] for name, r in chief.items()}, seconds=seconds,
        train_seconds={m: chief[m]["seconds"] for m in modes}, workers=workers,
        local_examples=[r[m]["local_examples"] for r in [chief, *copies] for m in modes],
        replicas=chief[modes[0]]["replicas"], global_batch=global_batch,
        per_worker_batch=global_batch // n,
    )


def worker_main(argv=None):
    """The multi-worker training program (``scripts/multiworker.py``); returns an exit code.

    Several machines: on machine I of the list (the same list, in the same order, everywhere)::

        python scripts/multiworker.py --workers host1:port,host2:port --index I

    (or set ``TF_CONFIG`` yourself and leave out ``--workers``/``--index``). Every worker trains
    ``demo_model`` on ``demo_data`` with the same global batch; worker 0, the chief, writes the
    final weights to ``--out``, worker i writes its copy next to it (``<out>.worker<i>.npz``,
    the usual rule: only the chief writes the real result). ``--compare``: the chief then also
    trains on one device and prints the largest weight difference. ``--local N`` starts N
    workers on this machine (``run_local_workers``) and prints the comparison.
    """
    parser = argparse.ArgumentParser(
        prog="multiworker.py",
        description="Data-parallel training of a small MLP with MultiWorkerMirroredStrategy: "
                    "run it on every machine with the same --workers and this machine's --index.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--workers", help="comma-separated host:port of every worker, same order "
                                        "on every machine (worker 0 is the chief)")
    mode.add_argument("--local", type=int, metavar="N",
                      help="start N workers on this machine (CPU only) and compare with one device")
    parser.add_argument("--index", type=int, help="this machine's position in --workers")
    parser.add_argument("--out", default="multiworker_weights.npz",
                        help="where the chief writes its weights (.npz)")
    parser.add_argument("--compare", action="store_true",
                        help="the chief also trains on one device and reports the difference")
    parser.add_argument("--examples", type=int, default=MULTI_WORKER_DEFAULTS["examples"])
    parser.add_argument("--global-batch", type=int, default=MULTI_WORKER_DEFAULTS["global_batch"],
                        help="examples per step over ALL replicas of all workers")
    parser.add_argument("--epochs", type=int, default=MULTI_WORKER_DEFAULTS["epochs"])
    parser.add_argument("--seed", type=int, default=MULTI_WORKER_DEFAULTS["seed"])
    parser.add_argument("--input", default=",".join(INPUT_MODES),
                        help=f"how each worker gets its part of every global batch: one or "
                             f"more of {', '.join(INPUT_MODES)}, comma-separated (one training "
                             f"each)")
    parser.add_argument("--communication", choices=COMMUNICATIONS, default="ring")
    parser.add_argument("--timeout", type=float, default=150.0, help="for --local: seconds")
    args = parser.parse_args(argv)
    try:
        modes = _input_modes(args.input.split(","))
    except ValueError as err:
        parser.error(str(err))

    if args.local is not None:
        r = run_local_workers(args.local, timeout=args.timeout, examples=args.examples,
                              global_batch=args.global_batch, epochs=args.epochs,
                              seed=args.seed, input_modes=modes,
                              communication=args.communication)
        print(f"{args.local} workers ({', '.join(r['workers'])}), global batch "
              f"{r['global_batch']} = {args.local} x {r['per_worker_batch']}, wall time "
              f"{r['seconds']:.1f} s")
        for name, difference in r["differences"].items():
            print(f"  input {name}: max |weight difference| to one device {difference:.3g}")
        print(f"  workers among themselves: {r['replica_difference']:.3g}")
        print(json.dumps(r))
        return 0

    if args.workers:
        if args.index is None:
            parser.error("--workers needs --index (this machine's position in the list)")
        os.environ["TF_CONFIG"] = multi_worker_config(args.workers.split(","), args.index)
    elif args.index is not None:
        parser.error("--index needs --workers")
    elif not os.environ.get("TF_CONFIG"):
        parser.error("give --workers host:port,... and --index I (or set TF_CONFIG), or --local N")
    strategy = multi_worker_strategy(args.communication)  # first TensorFlow work
    tf.config.experimental.enable_op_determinism()
    resolver = strategy.cluster_resolver
    index = resolver.task_id
    is_chief = resolver.task_type == "chief" or (resolver.task_type == "worker" and index == 0)
    x, y = demo_data(n=args.examples, seed=args.seed)
    results = {m: train_multi_worker(strategy, demo_model, x, y, args.global_batch,
                                     args.epochs, seed=args.seed, input_mode=m) for m in modes}
    summary = dict(role=resolver.task_type, index=index, chief=is_chief,
                   replicas=strategy.num_replicas_in_sync,
                   losses={m: r["losses"] for m, r in results.items()})
    if args.compare and is_chief:
        # The same training on one device (TF's default strategy: no replicas, no all-reduce),
        # in this process once the cluster's work is done.
        results["single"] = train_once(tf.distribute.get_strategy(), demo_model, x, y,
                                       args.global_batch, args.epochs, seed=args.seed)
        summary["max_weight_difference"] = {
            m: max_weight_difference(results[m]["weights"], results["single"]["weights"])
            for m in modes}
    # Only the chief writes the result; the others write their copy elsewhere (on one machine
    # they must not overwrite the chief's file), which also shows that the replicas agree.
    path = Path(args.out) if is_chief else _worker_copy_path(args.out, index)
    _save_results(path, results)
    summary["out"] = str(path)
    print(json.dumps(summary))
    return 0
