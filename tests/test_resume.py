"""Interrupted runs resume with nothing lost: SIGKILL mid-epoch, start again, same weights.

One small pipeline (MLM pre-training with ``saving.BackupAndRestore``, then
``finetuning.finetune(..., strategy="gradual", backup_dir=...)``: the trainable set and the
optimizer's variables change every epoch, early stopping keeps state) runs in subprocesses:
once straight through without any backup, and once killed twice (mid-epoch in pre-training,
mid-epoch in fine-tuning, with the latest backup file then cut short on disk) and restarted. Every weight and every history value must be
EXACTLY equal: the resumed run does the same float operations in the same order (same batches,
masks, dropout draws, learning rates), so any difference is a resume bug, not round-off.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from ptft_keras import finetuning, models, objectives, saving

    work, kill = sys.argv[1], sys.argv[2]  # kill: "none" or "<fit number>:<epoch>:<batch>"
    backups = sys.argv[3] == "backup"  # "plain": no backups at all, the reference

    class Kill(keras.callbacks.Callback):  # SIGKILL: no cleanup, no Python finally blocks
        def __init__(self, epoch, batch):
            super().__init__()
            self.at = (epoch, batch)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch) == self.at:
                os.kill(os.getpid(), signal.SIGKILL)

    fits = [0]
    original_fit = keras.Model.fit
    def fit(self, *args, callbacks=None, **kwargs):  # finetune() takes no callbacks: inject
        fits[0] += 1
        callbacks = list(callbacks or [])
        if kill != "none" and int(kill.split(":")[0]) == fits[0]:
            callbacks.insert(0, Kill(*map(int, kill.split(":")[1:])))
        return original_fit(self, *args, callbacks=callbacks, **kwargs)
    keras.Model.fit = fit

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=96).astype("int32")
    low = np.where(labels == 1, 25, 5)[:, None]
    ids = (low + rng.integers(0, 20, size=(96, 8))).astype("int32")
    ids[:, 0], ids[:, -1] = 2, 3

    backbone_path = os.path.join(work, "backbone.keras")
    if os.path.exists(backbone_path):  # pre-training finished in an earlier run
        fits[0] += 1
        backbone = saving.load_model(backbone_path)
    else:
        backbone = models.TransformerBackbone(50, 8, num_layers=1, hidden_dim=16, num_heads=2,
                                              intermediate_dim=32)
        pretrainer = objectives.MaskedLMPretrainer(backbone)
        data = objectives.MLMDataset(ids, 50, batch_size=16, seed=0)
        pretrainer(data[0][0])  # BackupAndRestore needs a built model
        backup = saving.BackupAndRestore(os.path.join(work, "mlm_backup"), datasets=[data])
        pretrainer.fit(data, epochs=3, verbose=0, callbacks=[backup] if backups else [])
        saving.save_model(backbone, backbone_path)

    classifier = models.build_classifier(backbone, 2)
    result = finetuning.finetune(
        classifier, (ids[:64], labels[:64]), (ids[64:], labels[64:]), backbone=backbone,
        strategy="gradual", epochs=4, batch_size=16, learning_rate=3e-3, patience=1,
        backup_dir=os.path.join(work, "finetune_backup") if backups else None)
    np.savez(os.path.join(work, "weights.npz"),
             *[v.numpy() for v in backbone.weights], *[v.numpy() for v in classifier.weights])
    with open(os.path.join(work, "history.json"), "w") as f:
        json.dump({"history": result.history, "epochs": result.epochs,
                   "trainable": result.trainable}, f)
    """
)


def _start(script, work, kill, backups="backup"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, str(script), str(work), kill, backups], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, expect_kill):
    output, _ = process.communicate(timeout=300)
    if expect_kill:
        assert process.returncode == -9, f"expected a SIGKILL, got {process.returncode}\n{output}"
    else:
        assert process.returncode == 0, output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    script = root / "pipeline.py"
    script.write_text(SCRIPT)
    straight, resumed = root / "straight", root / "resumed"
    straight.mkdir()
    resumed.mkdir()
    # The reference: no backups at all, so it also shows that backups change no number.
    reference = _start(script, straight, "none", "plain")  # in parallel with the chain
    # 1. killed in pre-training, epoch 1, after batch 2 (epoch 0's backup is on disk).
    _finish(_start(script, resumed, "1:1:2"), expect_kill=True)
    assert os.path.exists(resumed / "mlm_backup" / "latest.weights.h5")
    assert not os.path.exists(resumed / "backbone.keras")
    # 2. resumes pre-training, saves the backbone, killed in fine-tuning at epoch 2, batch 1.
    _finish(_start(script, resumed, "2:2:1"), expect_kill=True)
    assert not os.path.exists(resumed / "mlm_backup")  # deleted once pre-training ended
    latest = resumed / "finetune_backup" / "latest.weights.h5"
    # As if killed while writing the next checkpoint: the latest file is cut in half. The
    # previous checkpoint (.bkp) takes over: one more epoch to redo, the same numbers.
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    # 3. resumes fine-tuning to the end.
    _finish(_start(script, resumed, "none"), expect_kill=False)
    _finish(reference, expect_kill=False)
    return straight, resumed


def test_resumed_weights_equal_uninterrupted_run(runs):
    straight, resumed = runs
    with np.load(straight / "weights.npz") as a, np.load(resumed / "weights.npz") as b:
        assert a.files == b.files and len(a.files) > 10
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # exactly: tolerance 0


def test_resumed_history_equal_uninterrupted_run(runs):
    straight, resumed = runs
    a = json.loads((straight / "history.json").read_text())
    b = json.loads((resumed / "history.json").read_text())
    assert a == b  # every epoch, the ones before the kill too
    assert len(a["history"]["val_loss"]) == a["epochs"] >= 3
    assert not os.path.exists(resumed / "finetune_backup")  # deleted at the end
    assert not os.path.exists(straight / "finetune_backup")


def test_mid_epoch_save_freq_is_refused(tmp_path):
    from ptft_keras import saving

    with pytest.raises(ValueError, match="save_freq='epoch'"):
        saving.BackupAndRestore(str(tmp_path), save_freq=5)



# --- atomic save -----------------------------------------------------------------------------------
class _DiesHalfWay:
    """A file object that fails after ``limit`` bytes, like a process killed mid-save."""

    def __init__(self, file, limit):
        self._file, self._left = file, limit

    def write(self, data):
        if len(data) > self._left:
            self._file.write(bytes(data[: self._left]))
            self._file.flush()
            raise OSError("interrupted half-way through the save")
        self._left -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)


@pytest.fixture()
def tiny_model():
    import keras

    from ptft_keras import models

    keras.utils.set_random_seed(0)
    backbone = models.TransformerBackbone(50, 8, num_layers=1, hidden_dim=16, num_heads=2,
                                          intermediate_dim=32)
    ids = np.random.default_rng(0).integers(5, 50, size=(4, 8)).astype("int32")
    return models.build_classifier(backbone, 2), ids


def _interrupt_saves(monkeypatch, limit=5000):
    from keras.src.saving import saving_lib

    real = saving_lib._save_model_to_fileobj
    monkeypatch.setattr(saving_lib, "_save_model_to_fileobj",
                        lambda model, f, *args: real(model, _DiesHalfWay(f, limit), *args))


def test_interrupted_save_leaves_previous_file_whole(tiny_model, tmp_path, monkeypatch):
    from ptft_keras import saving

    model, ids = tiny_model
    path = tmp_path / "model.keras"
    saving.save_model(model, path)
    before = np.asarray(model.predict({"token_ids": ids}, verbose=0))
    for variable in model.trainable_variables:  # the next version of the model
        variable.assign(variable.numpy() + 0.5)
    assert not np.allclose(np.asarray(model.predict({"token_ids": ids}, verbose=0)), before)

    _interrupt_saves(monkeypatch)
    with pytest.raises(OSError, match="half-way"):
        saving.save_model(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temporary left
    again = saving.load_model(path)
    np.testing.assert_allclose(np.asarray(again.predict({"token_ids": ids}, verbose=0)), before,
                               atol=1e-6)

    # The plain save, interrupted the same way, destroys the file: load_model says so clearly.
    with pytest.raises(OSError, match="half-way"):
        model.save(path)
    with pytest.raises(saving.ModelFileError, match=r"model\.keras.*Save the model again"):
        saving.load_model(path)


def test_damaged_or_missing_files_give_a_clear_error(tiny_model, tmp_path):
    from ptft_keras import saving

    model, _ = tiny_model
    path = tmp_path / "model.keras"
    saving.save_model(model, path)
    whole = path.read_bytes()

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(saving.ModelFileError, match=r"truncated\.keras.*re-run the script"):
        saving.load_model(truncated)

    corrupted = tmp_path / "corrupted.keras"  # same size, bytes flipped inside the weights
    middle = len(whole) // 2
    corrupted.write_bytes(whole[:middle] + bytes(b ^ 0xFF for b in whole[middle:middle + 64])
                          + whole[middle + 64:])
    with pytest.raises(saving.ModelFileError, match=r"corrupted\.keras"):
        saving.load_model(corrupted)

    with pytest.raises(FileNotFoundError, match=r"missing\.keras.*save_model"):
        saving.load_model(tmp_path / "missing.keras")
