"""tf.distribute: MirroredStrategy over two logical CPUs equals one device; clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptft_keras import config, distributed, finetuning, models, objectives

TOLERANCE = 1e-5  # float32 sums in another order; measured max |diff| ~1.5e-7 after 24 steps


@pytest.fixture(scope="module")
def mirrored_run():
    """Logical devices exist only if configured before TF initialises: a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PTFT_MODE="QUICK")
    script = Path(__file__).with_name("_mirrored_check.py")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_equals_one_device_for_the_same_global_batch(mirrored_run):
    r = mirrored_run
    assert r["logical_cpus"] == 2 and r["replicas"] == 2
    assert r["cross_device_ops"] == "ReductionToOneDevice"
    assert r["auto_kind"] == "MirroredStrategy"  # two logical CPUs: "auto" distributes
    assert r["initial_diff"] == 0.0  # same seed, same initial weights under both strategies
    assert r["weight_change"] > 0.05  # training moved the weights: the comparison means something
    assert r["weight_diff"] < TOLERANCE, (
        f"MirroredStrategy (2 replicas) vs one device: max |weight diff| {r['weight_diff']:.3g}"
        f" exceeds the tolerance {TOLERANCE}"
    )
    assert r["weight_diff_tf_default_ops"] < TOLERANCE, "TF's default all-reduce on CPUs"
    np.testing.assert_allclose(r["losses_mirrored"], r["losses_single"], rtol=1e-5,
                               err_msg="per-epoch losses, tolerance rtol 1e-5")
    assert r["losses_single"][-1] < r["losses_single"][0]
    # The check can fail: another global batch gives clearly different weights.
    assert r["weight_diff_other_batch"] > 1000 * TOLERANCE
    assert r["weight_diff_single_rerun"] == 0.0  # one device is deterministic run to run


def test_logical_cpus_is_idempotent_and_finetune_runs_data_parallel(mirrored_run):
    assert mirrored_run["again_logical_cpus"] == ["/device:CPU:0", "/device:CPU:1"]
    assert mirrored_run["finetune_variable_type"] == "MirroredVariable"
    assert max(mirrored_run["finetune_val_accuracy"]) > 0.9


def test_logical_cpus_too_late_says_what_to_do():
    tf.constant(1.0)  # TensorFlow is initialised in this process (it was already, by pytest)
    with pytest.raises(RuntimeError, match=r"first thing.*restart the kernel"):
        distributed.logical_cpus(3)
    # Asking for what is already there is not an error, even now.
    assert distributed.logical_cpus(1) == ["/device:CPU:0"]
    with pytest.raises(ValueError, match="positive int"):
        distributed.logical_cpus(0)


def test_get_strategy_kinds():
    assert distributed.get_strategy("default") is tf.distribute.get_strategy()
    # One CPU, no GPU here: nothing to mirror over, "auto" falls back to the default strategy.
    if not tf.config.list_logical_devices("GPU"):
        assert distributed.get_strategy("auto") is tf.distribute.get_strategy()
    one = distributed.get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(one, tf.distribute.MirroredStrategy) and one.num_replicas_in_sync == 1
    assert isinstance(one.extended._cross_device_ops, tf.distribute.ReductionToOneDevice)
    with pytest.raises(ValueError, match="Unknown strategy kind"):
        distributed.get_strategy("tpu")


def test_train_once_refuses_uneven_batches():
    x, y = distributed.demo_data(n=100)
    with pytest.raises(ValueError, match="whole global batches"):
        distributed.train_once(tf.distribute.get_strategy(), distributed.demo_model, x, y, 32)


def test_multi_worker_config_is_valid_tf_config_json():
    workers = ["10.0.0.1:12345", "10.0.0.2:12345"]
    for index in (0, 1):
        cfg = json.loads(distributed.multi_worker_config(workers, index))
        assert cfg == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    with pytest.raises(ValueError, match="index"):
        distributed.multi_worker_config(workers, 2)
    with pytest.raises(ValueError, match="host:port"):
        distributed.multi_worker_config(["10.0.0.1"], 0)


def _tiny_backbone():
    return models.TransformerBackbone(60, 12, num_layers=1, hidden_dim=16, num_heads=2,
                                         intermediate_dim=32)


def test_finetune_and_compile_mlm_check_the_model_was_made_in_scope():
    config.set_seed(0)
    strategy = distributed.get_strategy("mirrored", devices=["/cpu:0"])
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, size=(64, 12)).astype("int32")
    labels = rng.integers(0, 2, size=64).astype("int32")
    data = ((ids, labels), (ids[:16], labels[:16]))

    outside = models.build_classifier(_tiny_backbone(), 2)
    with pytest.raises(ValueError, match="not created inside this strategy's scope"):
        finetuning.finetune(outside, *data, epochs=1, distribute_strategy=strategy)
    backbone = _tiny_backbone()  # built before the scope, wrapped inside it
    with strategy.scope():
        mixed = models.build_classifier(backbone, 2)
    with pytest.raises(ValueError, match="created outside the strategy's scope"):
        finetuning.finetune(mixed, *data, backbone=backbone, epochs=1,
                          distribute_strategy=strategy)

    with strategy.scope():
        backbone = _tiny_backbone()
        inside = models.build_classifier(backbone, 2)
    result = finetuning.finetune(inside, *data, backbone=backbone, epochs=1,
                                   distribute_strategy=strategy)
    assert np.isfinite(result.history["loss"][0])
    assert isinstance(inside.weights[0].value, tf.distribute.DistributedValues)
    assert all(isinstance(v.value, tf.distribute.DistributedValues)
               for v in inside.optimizer.variables)

    with pytest.raises(ValueError, match="not created inside"):
        objectives.compile_mlm(objectives.MaskedLMPretrainer(_tiny_backbone()),
                                distribute_strategy=strategy)
    with strategy.scope():
        mlm = objectives.MaskedLMPretrainer(_tiny_backbone())
    objectives.compile_mlm(mlm, distribute_strategy=strategy)
    dataset = objectives.MLMDataset(ids, 60, batch_size=32, shuffle=False)
    loss = mlm.fit(dataset, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in mlm.weights)
    keras.backend.clear_session()
