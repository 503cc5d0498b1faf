"""Saving that survives interruptions: atomic ``.keras`` files, training that resumes.

``save_model(model, path)`` writes a temporary file next to ``path`` and renames it over
``path`` (``os.replace``, atomic), so a save killed half-way leaves the previous file whole.
``load_model(path)`` checks the file first (missing, truncated or corrupted: a clear error
that names it and says what to do) and then calls ``keras.saving.load_model``.

``BackupAndRestore`` is Keras' callback (``keras.callbacks.BackupAndRestore``) with what Keras
3.15 leaves out, so a run killed at any moment (SIGKILL included) and started again with the
same arguments ends with the same weights as a run never interrupted:

- Keras resumes at epoch granularity: the checkpoint's ``batch`` is written but never read, so
  with ``save_freq=<int>`` a resumed run trains the first batches of the interrupted epoch a
  second time, on weights that have already seen them. Here checkpoints are per epoch; a run
  killed mid-epoch redoes that epoch from its start (the work of one partial epoch is lost,
  no numbers change).
- Keras does not save the random-seed state of dropout layers (``SeedGenerator`` is not a
  saved object): a resumed run would draw epoch 0's dropout masks again. Nor the state of
  Python's ``random``, which ``fit(shuffle=True)`` (the default) uses to order the batches of
  a ``PyDataset`` every epoch: a resumed run would order them as epoch 0 did. Both saved here
  (NumPy's global generator too).
- An epoch-seeded dataset (``ptft_keras.data.datasets.EpochDataset``: ``MLMDataset``, ...)
  counts epochs from 0 in every new process, so after a resume it would serve epoch 0's
  batches (masks) at epoch E. Pass it as ``datasets=[...]`` and it is moved to epoch E.
- A kill between Keras' weight file and its metadata file leaves weights of one epoch with
  the epoch number of the one before. Here the epoch is read back from what the weights say
  (the optimizer's step counter, recorded with each checkpoint); a torn weight file falls back
  to the previous checkpoint (``double_checkpoint``), a torn first one to a fresh start.

Subclasses add their own state (``get_extra_state`` / ``set_extra_state``): ``finetune()``
keeps early stopping and the history that way.
"""

import glob
import json
import os
import random
import shutil
import tempfile
import warnings
import zipfile

import keras
import numpy as np

__all__ = ["BackupAndRestore", "ModelFileError", "check_model_file", "load_model", "save_model"]


# --- atomic .keras files ---------------------------------------------------------------------------
def save_model(model, path, **kwargs):
    """``model.save(path)``, atomically: the old ``path`` stays whole until the new one is complete.

    ``path`` must end in ``.keras``. ``kwargs`` go to ``model.save``. Returns ``path``.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"save_model writes .keras files: {path!r} should end in '.keras'.")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one file system.
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp.keras", dir=folder)
    os.close(handle)
    try:
        model.save(temporary, **kwargs)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the file
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(folder)
    return path


def _fsync_folder(folder):
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class ModelFileError(ValueError):
    """A ``.keras`` file that cannot be read: missing, truncated or corrupted."""


def _damaged(path, what):
    return ModelFileError(
        f"Cannot load {path!r}: {what}. The file was probably cut short by an interrupted save "
        f"(or damaged while copied). Save the model again (ptft_keras.saving.save_model writes "
        f"atomically) or re-run the script that created it."
    )


def check_model_file(path):
    """Raise ``FileNotFoundError`` / ``ModelFileError`` unless ``path`` is a whole ``.keras`` file.

    Reads the zip directory and the CRC of every member: a truncated or corrupted file fails
    here, before Keras builds anything.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No model file at {path!r}: save one with ptft_keras.saving.save_model(model, "
            f"{path!r}) or re-run the script that creates it."
        )
    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise _damaged(path, f"it is not a complete .keras (zip) archive ({size} bytes)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()  # reads every member, checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:
        raise _damaged(path, f"its archive is damaged ({error})") from error
    if bad is not None:
        raise _damaged(path, f"member {bad!r} fails its checksum")
    missing = {"config.json", "metadata.json"} - names
    if missing:
        raise _damaged(path, f"it lacks {sorted(missing)}")


def load_model(path, **kwargs):
    """``keras.saving.load_model(path)`` after ``check_model_file(path)``.

    The course's registered classes (models, objectives, layers...) are imported first, so any
    ``.keras`` file the course wrote loads. ``kwargs`` go to ``keras.saving.load_model``.
    """
    path = os.fspath(path)
    if path.endswith(".keras") or os.path.isfile(path):
        check_model_file(path)
    elif not os.path.exists(path):
        check_model_file(path)  # the FileNotFoundError with the fix
    import ptft_keras

    ptft_keras.models  # noqa: B018 (imports every Keras part: registers the classes)
    return keras.saving.load_model(path, **kwargs)


# --- backup and restore of a training run ----------------------------------------------------------
def _atomic_write(path, write):
    """``write(file)`` into a temporary file next to ``path``, then rename it to ``path``."""
    handle, temporary = tempfile.mkstemp(prefix=".tmp.", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _seed_states(model):
    """The random-seed state variables (dropout...) of ``model``: in ``variables``, not ``weights``."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that resumes to the same numbers (see the module doc).

    backup_dir: a folder for this run only; deleted when training ends
    (``delete_checkpoint=True``). datasets: ``EpochDataset``-style datasets fed to this ``fit``
    (an ``epoch`` attribute, ``on_epoch_end()`` moves to the next epoch by hand), moved to the
    resumed epoch. Checkpoints are written at the end of every epoch.

    After ``on_train_begin``, ``resumed_epoch`` is the epoch training resumes at (0: fresh).
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True, datasets=()):
        if save_freq != "epoch":
            raise ValueError(
                f"save_freq={save_freq!r}: Keras 3 restores a backup at the start of its epoch "
                f"(the batch number is not used), so a mid-epoch checkpoint would make the "
                f"resumed run train those batches twice. Use save_freq='epoch'."
            )
        super().__init__(os.fspath(backup_dir), save_freq="epoch", double_checkpoint=True,
                         delete_checkpoint=delete_checkpoint)
        self.datasets = list(datasets)
        self.resumed_epoch = 0

    # State a subclass adds: a dict of JSON values and numpy arrays (key "arrays": list of them).
    def get_extra_state(self):
        return {}

    def set_extra_state(self, state):
        pass

    def _state_path(self, epoch):
        return os.path.join(self.backup_dir, f"state-{epoch:06d}.npz")

    def _iterations(self):
        optimizer = getattr(self.model, "optimizer", None)
        return None if optimizer is None else int(optimizer.iterations.numpy())

    def _write_state(self, epoch):
        os.makedirs(self.backup_dir, exist_ok=True)
        extra = self.get_extra_state()
        arrays = extra.pop("arrays", [])
        payload = {
            "epoch": epoch,
            "iterations": self._iterations(),
            "extra": extra,
            "num_arrays": len(arrays),
        }
        version, python_state, gauss = random.getstate()
        numpy_state = np.random.get_state()
        payload["python_random"] = [version, list(python_state), gauss]
        payload["numpy_random"] = [numpy_state[0], *[_plain(x) for x in numpy_state[2:]]]
        seeds = [np.asarray(v.numpy()) for v in _seed_states(self.model)]
        named = {f"seed_{i}": value for i, value in enumerate(seeds)}
        named["numpy_random"] = numpy_state[1]
        named.update({f"array_{i}": np.asarray(value) for i, value in enumerate(arrays)})
        named["state"] = np.array(json.dumps(payload))
        _atomic_write(self._state_path(epoch), lambda f: np.savez(f, **named))
        # Keep the last three: the one Keras' metadata may still point to, and its backup's.
        for old in sorted(glob.glob(os.path.join(self.backup_dir, "state-*.npz")))[:-3]:
            os.remove(old)

    def _read_states(self):
        states = []
        for path in sorted(glob.glob(os.path.join(self.backup_dir, "state-*.npz"))):
            try:
                with np.load(path, allow_pickle=False) as data:
                    payload = json.loads(str(data["state"]))
                    seeds = [data[f"seed_{i}"] for i in range(sum(
                        1 for key in data.files if key.startswith("seed_")))]
                    arrays = [data[f"array_{i}"] for i in range(payload["num_arrays"])]
                    payload["numpy_random_keys"] = data["numpy_random"]
            except Exception:  # noqa: BLE001, S112 (a torn file is skipped: an older one is kept)
                continue
            states.append((payload, seeds, arrays))
        return states

    def on_epoch_end(self, epoch, logs=None):
        self._write_state(epoch + 1)  # first: the weights that follow must find their state
        super().on_epoch_end(epoch, logs)

    def on_train_begin(self, logs=None):
        weights, metadata = self._weights_path, self._training_metadata_path
        self.model._initial_epoch = None
        try:
            super().on_train_begin(logs)  # loads the weights, falls back to .bkp on OSError
        except json.JSONDecodeError:
            pass  # metadata cut short: the weights are loaded, their state says the epoch
        except Exception as error:
            if os.path.exists(self._prev_weights_path):
                shutil.copy(self._prev_weights_path, weights)
                if os.path.exists(self._prev_training_metadata_path):
                    shutil.copy(self._prev_training_metadata_path, metadata)
                super().on_train_begin(logs)
            elif not os.path.exists(metadata):
                # Killed while writing the first checkpoint: there is nothing to resume.
                warnings.warn(f"Ignoring the unfinished first backup in {self.backup_dir!r} "
                              f"({type(error).__name__}): training starts from epoch 0.")
                os.remove(weights)
            else:
                raise RuntimeError(
                    f"The backup in {self.backup_dir!r} cannot be read ({error}). Delete that "
                    f"folder to start the run again from the beginning."
                ) from error
        if not os.path.exists(weights):  # a fresh run
            for old in glob.glob(os.path.join(self.backup_dir, "state-*.npz")):
                os.remove(old)
            self.model._initial_epoch = None
            self.resumed_epoch = 0
            return
        iterations = self._iterations()
        states = self._read_states()
        match = [s for s in states if s[0]["iterations"] == iterations]
        if not match:
            keras_epoch = self.model._initial_epoch
            match = [s for s in states if s[0]["epoch"] == keras_epoch]
            if iterations is not None or not match:
                raise RuntimeError(
                    f"The backup in {self.backup_dir!r} is inconsistent: its weights (after "
                    f"{iterations} steps) match none of its saved states. Delete that folder "
                    f"to start the run again from the beginning."
                )
        payload, seeds, arrays = match[-1]
        states = _seed_states(self.model)
        if len(states) != len(seeds):
            raise RuntimeError(
                f"The backup in {self.backup_dir!r} was written by a different model "
                f"({len(seeds)} random-seed states, this one has {len(states)}): delete that "
                f"folder, or pass the model the run started with."
            )
        for variable, value in zip(states, seeds):
            variable.assign(value)
        # Keras draws the batch order of a PyDataset with Python's `random` when the epoch's
        # first batch is fetched (fit's shuffle=True), so it must continue where it was too.
        version, python_state, gauss = payload["python_random"]
        random.setstate((version, tuple(python_state), gauss))
        name, position, has_gauss, cached = payload["numpy_random"]
        np.random.set_state((name, payload["numpy_random_keys"], position, has_gauss, cached))
        epoch = int(payload["epoch"])
        self.model._initial_epoch = epoch  # what fit() reads; the weights' epoch, not the file's
        self.resumed_epoch = epoch
        for dataset in self.datasets:
            _move_dataset(dataset, epoch)
        self.set_extra_state({**payload["extra"], "arrays": arrays})

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # the datasets have just started this epoch: do they serve it?
            for dataset in self.datasets:
                if dataset.epoch != self._epoch:
                    raise RuntimeError(
                        f"{type(dataset).__name__} serves epoch {dataset.epoch}'s batches at "
                        f"epoch {self._epoch}: pass BackupAndRestore(datasets=[...]) only the "
                        f"datasets given to this fit(), created fresh for it."
                    )

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        # Keras keeps the restored epoch on the model: a later fit() would start there too.
        self.model._initial_epoch = None


def _move_dataset(dataset, epoch):
    """Move an ``EpochDataset`` that Keras has not started yet to ``epoch``, by hand.

    Inside ``fit`` Keras has already called ``on_epoch_end()`` once (its reset) when callbacks
    start, and the first ``on_epoch_begin()`` steps back over that call (see
    ``EpochDataset.on_epoch_begin``): so ``epoch`` more by-hand steps make it serve ``epoch``.
    """
    if getattr(dataset, "_keras_epochs", False):
        raise ValueError(
            "BackupAndRestore(datasets=...) got a dataset that an earlier fit() already used: "
            "give the resumed fit() a new dataset."
        )
    for _ in range(epoch):
        dataset.on_epoch_end()
