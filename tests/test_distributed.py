"""tf.distribute: MirroredStrategy over two logical CPUs, and MultiWorkerMirroredStrategy over
two worker processes, equal one device; config picks every GPU; clear errors."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ptft_keras import config, distributed, finetuning, models, objectives

TOLERANCE = 1e-5  # float32 sums in another order; measured max |diff| ~1.5e-7 after 24 steps
WORKER_TIMEOUT = 150  # s for both worker processes; ~15 s on a quiet 2-core machine


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


# --- MultiWorkerMirroredStrategy: two real worker processes -----------------------------------
@pytest.fixture(scope="module")
def multi_worker_run():
    """Two CPU-only workers on 127.0.0.1 (free ports), ring all-reduce over gRPC; the chief
    also trains one device. Bounded: every process is killed after WORKER_TIMEOUT seconds."""
    start = time.perf_counter()
    result = distributed.run_local_workers(2, timeout=WORKER_TIMEOUT)
    result["test_seconds"] = time.perf_counter() - start
    print(f"\nmulti-worker vs one device: max |weight diff| {result['differences']}, "
          f"workers {result['replica_difference']}, wall {result['seconds']:.1f} s")
    return result


def test_two_worker_processes_equal_one_device_for_the_same_global_batch(multi_worker_run):
    r = multi_worker_run
    assert len(r["workers"]) == 2 and all(w.startswith("127.0.0.1:") for w in r["workers"])
    assert len(set(r["workers"])) == 2
    assert r["replicas"] == 2 and r["global_batch"] == 64 and r["per_worker_batch"] == 32
    # Each worker took only its half of every global batch (both input modes), so matching one
    # device needs the gradients of both workers: the all-reduce really happened.
    assert r["local_examples"] == [256] * 4
    assert r["initial_difference"] == 0.0  # same seed (and the chief's values broadcast)
    assert r["weight_change"] > 0.05  # training moved the weights: the comparison means something
    assert set(r["differences"]) == set(distributed.INPUT_MODES)
    for mode, difference in r["differences"].items():
        assert difference < TOLERANCE, (
            f"2 workers (input {mode}) vs one device: max |weight diff| {difference:.3g} "
            f"exceeds {TOLERANCE}")
    assert r["replica_difference"] == 0.0  # all-reduce gives every worker the same update
    for mode in distributed.INPUT_MODES:
        np.testing.assert_allclose(r["losses"][mode], r["losses"]["single"], rtol=1e-5)
    assert r["losses"]["single"][-1] < r["losses"]["single"][0]
    assert r["seconds"] < WORKER_TIMEOUT


def test_run_local_workers_kills_its_workers_when_time_is_up(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(distributed.subprocess, "Popen", recording_popen)
    with pytest.raises(TimeoutError, match="did not finish within 0.5 s"):
        distributed.run_local_workers(2, timeout=0.5)  # they are still importing TensorFlow
    assert len(started) == 2 and all(p.poll() is not None for p in started)


def test_run_local_workers_checks_its_arguments_before_starting_anything():
    with pytest.raises(ValueError, match="positive int"):
        distributed.run_local_workers(0)
    with pytest.raises(ValueError, match="timeout"):
        distributed.run_local_workers(2, timeout=0)
    with pytest.raises(ValueError, match="input_modes"):
        distributed.run_local_workers(2, input_modes=("files",))
    with pytest.raises(ValueError, match="whole global batches"):
        distributed.run_local_workers(2, examples=100)
    with pytest.raises(ValueError, match="Unknown communication"):
        distributed.run_local_workers(2, communication="carrier-pigeon")


def test_free_ports_and_tf_config_for_local_workers(monkeypatch):
    ports = distributed.free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= p < 65536 for p in ports)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG is not set"):
        distributed.multi_worker_strategy()
    with pytest.raises(ValueError, match="Unknown communication"):
        distributed.multi_worker_strategy("smoke-signals")


def test_multiworker_script_help_documents_the_command(monkeypatch):
    script = Path(__file__).resolve().parent.parent / "scripts" / "multiworker.py"
    assert "python scripts/multiworker.py --workers host1:" in script.read_text()
    with pytest.raises(SystemExit) as exit_info:
        distributed.worker_main(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(SystemExit):
        distributed.worker_main(["--workers", "127.0.0.1:1,127.0.0.1:2"])  # no --index
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        distributed.worker_main([])  # neither a cluster nor --local
    with pytest.raises(SystemExit):
        distributed.worker_main(["--local", "2", "--input", "files"])


# --- config: every GPU of the machine in FULL mode ---------------------------------------------
_CREATED = []  # every _FakeMirrored made


class _FakeMirrored:
    """Stands in for tf.distribute.MirroredStrategy: there is no GPU here."""

    def __init__(self, devices=None, **kwargs):
        self.devices = list(devices)
        _CREATED.append(self)

    def scope(self):
        return contextlib.nullcontext(self)


def _fake_gpus(n):
    return [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU")
            for i in range(n)]


def test_config_distribute_strategy_mirrors_over_every_gpu_in_full_mode(monkeypatch):
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", _FakeMirrored)
    monkeypatch.setattr(config, "_STRATEGIES", {})
    _CREATED.clear()
    gpu_count = {"n": 0}
    monkeypatch.setattr(config, "gpus", lambda: _fake_gpus(gpu_count["n"]))

    monkeypatch.setenv("PTFT_MODE", "FULL")
    for n in (0, 1):  # one device: plain Keras, no strategy
        gpu_count["n"] = n
        assert config.distribute_strategy() is None
        assert isinstance(config.strategy_scope(), contextlib.nullcontext)
    gpu_count["n"] = 2
    strategy = config.distribute_strategy()
    assert isinstance(strategy, _FakeMirrored) and strategy.devices == ["/gpu:0", "/gpu:1"]
    assert config.distribute_strategy() is strategy  # memoised: build and train in the same one
    with config.strategy_scope() as entered:
        assert entered is strategy
    gpu_count["n"] = 4
    assert config.distribute_strategy().devices == [f"/gpu:{i}" for i in range(4)]
    assert len(_CREATED) == 2

    monkeypatch.setenv("PTFT_MODE", "QUICK")  # QUICK stays on one device, even with GPUs
    assert config.distribute_strategy() is None
    assert len(_CREATED) == 2


def test_config_distribute_strategy_on_this_machine_is_plain_keras_or_every_gpu():
    strategy = config.distribute_strategy()
    if len(config.gpus()) > 1 and config.mode() == "FULL":
        assert isinstance(strategy, tf.distribute.MirroredStrategy)
    else:
        assert strategy is None  # here: no GPU, QUICK mode
    assert config.distribute_strategy() is strategy
