"""Run mode, seeds and device set-up: the one place that reads the environment.

QUICK (the default) uses small data slices and small models so that every notebook runs on a
2-core laptop CPU within its budget; FULL uses all data and larger models and is meant for a GPU.
Choose with the environment variable ``PTFT_MODE`` (``QUICK`` or ``FULL``).
"""

import contextlib
import os
import platform
import random

import numpy as np

MODE_VARIABLE = "PTFT_MODE"
SEED_VARIABLE = "PTFT_SEED"
DEFAULT_SEED = 42


def mode():
    """Return ``"QUICK"`` or ``"FULL"`` from ``$PTFT_MODE`` (default QUICK)."""
    value = os.environ.get(MODE_VARIABLE, "QUICK").strip().upper()
    if value not in ("QUICK", "FULL"):
        raise ValueError(
            f"{MODE_VARIABLE}={value!r} is not a run mode: set it to QUICK (laptop CPU, the "
            f"default) or FULL (all data, meant for a GPU)."
        )
    return value


def is_quick():
    return mode() == "QUICK"


def pick(quick, full):
    """``quick`` in QUICK mode, ``full`` in FULL mode: how notebooks size their experiments."""
    return quick if is_quick() else full


def seed():
    return int(os.environ.get(SEED_VARIABLE, DEFAULT_SEED))


def set_seed(value=None):
    """Seed Python, NumPy and Keras (which seeds TensorFlow) and ask TF for deterministic ops."""
    import keras

    value = seed() if value is None else int(value)
    random.seed(value)
    np.random.seed(value)
    keras.utils.set_random_seed(value)
    try:
        import tensorflow as tf

        # Same numbers on the same machine run after run; costs little on CPU.
        tf.config.experimental.enable_op_determinism()
    except Exception:  # other backends, or TF already initialised in a way that refuses it
        pass
    return value


def gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def device_name():
    found = gpus()
    if not found:
        return f"CPU ({os.cpu_count()} cores)"
    try:
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(found[0])
        name = details.get("device_name", "GPU")
    except Exception:
        name = "GPU"
    return f"{len(found)} x {name}"


_STRATEGIES = {}  # (mode, GPU names) -> strategy or None


def distribute_strategy():
    """The ``tf.distribute`` strategy to train with on this machine, or None for plain Keras.

    FULL mode with more than one GPU: a ``MirroredStrategy`` over all of them (data parallel:
    ``batch_size`` is global, split evenly; gradients all-reduced with NCCL). Otherwise (QUICK
    mode, one GPU, CPU only): None, one device, nothing to distribute. Memoised: every call
    returns the same strategy object, which matters because a model must be built in the very
    strategy's ``scope()`` it is trained with. Call it after ``setup()`` (creating the strategy
    initialises the GPUs). Pass it on unchanged::

        strategy = config.distribute_strategy()
        with config.strategy_scope():
            backbone = models.TransformerBackbone(...)
            classifier = models.build_classifier(backbone, 2)
        finetuning.finetune(classifier, train, validation, distribute_strategy=strategy)
        objectives.compile_mlm(pretrainer, distribute_strategy=strategy)
    """
    found = tuple(getattr(gpu, "name", str(gpu)) for gpu in gpus())
    key = (mode(), found)
    if key not in _STRATEGIES:
        strategy = None
        if key[0] == "FULL" and len(found) > 1:
            import tensorflow as tf

            strategy = tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(found))])
        _STRATEGIES[key] = strategy
    return _STRATEGIES[key]


def strategy_scope():
    """``distribute_strategy().scope()``, or a no-op context when that is None: build models in
    it so that they belong to the strategy ``finetune``/``compile_mlm`` are then given."""
    strategy = distribute_strategy()
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def setup(seed_value=None, mixed_precision="auto"):
    """Seed everything, pick the device and precision; returns the seed used.

    ``mixed_precision="auto"`` turns on ``mixed_float16`` on a GPU (tensor cores) and leaves
    float32 on the CPU, where mixed float16 is slower and mixed bfloat16 only helps on CPUs with
    AVX512-BF16 (the speed benchmark measures it).
    """
    import keras

    for gpu in gpus():
        import tensorflow as tf

        tf.config.experimental.set_memory_growth(gpu, True)
    policy = "float32"
    if mixed_precision == "auto" and gpus():
        policy = "mixed_float16"
    elif mixed_precision not in ("auto", None, False):
        policy = mixed_precision
    keras.mixed_precision.set_global_policy(policy)
    return set_seed(seed_value)


def env_report(seed_value=None):
    """Print (and return) versions, device, precision, mode and seed: the first cell of a notebook."""
    import keras
    import keras_hub
    import tensorflow as tf

    lines = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "precision": keras.mixed_precision.global_policy().name,
        "mode": mode(),
        "seed": seed() if seed_value is None else seed_value,
    }
    for key, value in lines.items():
        print(f"{key:>10}: {value}")
    return lines


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the ``with`` block (wrap the first TF import).

    TensorFlow's C++ start-up notices (oneDNN, "no CUDA driver", absl's pre-init line) are
    written straight to descriptor 2 before its logging is initialised, so
    ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them, and they would fill every notebook's first
    output. Python warnings and exceptions still show: they go through ``sys.stderr``, which
    Jupyter does not route through descriptor 2.
    """
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)
