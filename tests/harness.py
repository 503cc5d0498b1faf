"""A shared test harness for the package's serializable classes (in the spirit of keras-hub's
``TestCase.run_backbone_test`` / ``run_model_saving_test``, written for this course).

- ``run_model_test(cls, init_kwargs, input_data, expected_output_shape)``: build, call, check
  the output shape, the ``get_config`` -> ``from_config`` round trip and the parameter counts.
- ``run_saving_test(model, input_data, directory, saved)``: save ``.keras`` with the inputs and
  expected outputs next to it (``.npz``) and append the entry to ``saved``;
  ``check_reloads_in_fresh_process(saved)`` then loads EVERY saved model in ONE new Python
  process (TensorFlow imports once) that only ran ``from ptft_keras import models, objectives``,
  and compares outputs (``assert_allclose``, atol 1e-6).

``input_data`` is called the way it is given: a dict -> ``model(dict)`` (Functional models),
a tuple -> ``model(*tuple)`` (layers with several inputs), an array -> ``model(array)``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np

from ptft_keras import finetuning
from ptft_keras.layers import TiedOutput

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent


def call(model, input_data):
    if isinstance(input_data, dict):
        return model(input_data)
    if isinstance(input_data, tuple):
        return model(*input_data)
    return model(input_data)


def shapes(output):
    return keras.tree.map_structure(lambda x: tuple(x.shape), output)


def _sizes(variables):
    return sum(int(np.prod(v.shape)) for v in variables)


def run_model_test(cls, init_kwargs, input_data, expected_output_shape, check_config=True,
                   trains_only=None):
    """Build ``cls(**init_kwargs)``, call it on ``input_data`` and check it. Returns the model.

    - the output has ``expected_output_shape`` (a tuple, or a dict / list of them);
    - ``cls.from_config(get_config())`` has the same config, as many weights, and gives the
      same output shape (``check_config=False`` for a layer its owner rebuilds instead);
    - ``trainable_weights`` lists each trainable variable once, no more, no fewer;
    - ``finetuning.count_params`` gives the summed sizes of the trainable / all weights.

    ``trains_only(model)``: for a model whose objective trains only some of its weights by
    design (CBOW trains the embedding tables), the variables ``trainable_weights`` must list.
    """
    model = cls(**init_kwargs)
    output = call(model, input_data)
    assert shapes(output) == expected_output_shape, (
        f"{cls.__name__}: output shape {shapes(output)}, expected {expected_output_shape}")

    if check_config:
        config = model.get_config()
        assert json.dumps(keras.saving.serialize_keras_object(config)), "config is not JSON"
        clone = cls.from_config(config)
        assert type(clone) is cls
        assert clone.get_config() == config, (
            f"{cls.__name__}: from_config(get_config()) changed the config:\n"
            f"{config}\n!=\n{clone.get_config()}")
        assert shapes(call(clone, input_data)) == shapes(output), f"{cls.__name__}: clone shape"
        assert len(clone.weights) == len(model.weights), f"{cls.__name__}: clone's weight count"

    # Trainable variables and parameter counts.
    trainable = model.trainable_weights
    built_trainable = [v for v in model.weights if v.trainable]
    if trains_only is not None:
        built_trainable = list(trains_only(model))
    assert len({id(v) for v in trainable}) == len(trainable), (
        f"{cls.__name__}: a trainable variable is listed twice (a tied weight counted twice?)")
    assert {id(v) for v in trainable} == {id(v) for v in built_trainable}, (
        f"{cls.__name__}: trainable_weights != the trainable variables of the built model")
    assert len(trainable) == len(model.trainable_variables)
    trainable_count, total_count = finetuning.count_params(model)
    assert trainable_count == _sizes(built_trainable), f"{cls.__name__}: trainable parameters"
    assert total_count == _sizes(model.weights) == model.count_params(), (
        f"{cls.__name__}: total parameters")
    return model


# --- saving ---------------------------------------------------------------------------------------
def run_saving_test(model, input_data, directory, saved, name=None, needs_harness=False):
    """Save ``model`` as ``<directory>/<name>.keras`` with its inputs and outputs (``.npz``).

    Appends an entry to ``saved``; ``check_reloads_in_fresh_process(saved)`` checks it.
    ``needs_harness``: the model uses a class defined here (loaded after the package-only ones).
    """
    name = name or type(model).__name__
    directory = Path(directory)
    path = directory / f"{name}.keras"
    outputs = keras.tree.flatten(call(model, input_data))
    arrays = {f"out:{i}": np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(o, "float32")))
              for i, o in enumerate(outputs)}
    if isinstance(input_data, dict):
        kind = "dict"
        arrays.update({f"in:{k}": np.asarray(v) for k, v in input_data.items()})
    elif isinstance(input_data, tuple):
        kind = "args"
        arrays.update({f"in:{i}": np.asarray(v) for i, v in enumerate(input_data)})
    else:
        kind = "single"
        arrays["in:0"] = np.asarray(input_data)
    keras.saving.save_model(model, path)
    np.savez(directory / f"{name}.npz", **arrays)
    entry = {"name": name, "class": type(model).__name__, "keras": str(path),
             "npz": str(directory / f"{name}.npz"), "kind": kind, "outputs": len(outputs),
             "needs_harness": needs_harness}
    saved.append(entry)
    return entry


# Runs in the fresh process: nothing but the package is imported before the package-only models
# load; classes defined in this file are imported after them.
_LOADER = """
import json, sys, traceback
import numpy as np
from ptft_keras import models, objectives
import keras

entries = json.load(open(sys.argv[1]))
results = {}
for entry in sorted(entries, key=lambda e: e["needs_harness"]):
    try:
        if entry["needs_harness"]:
            sys.path.insert(0, %(tests)r)
            import harness  # noqa: F401  (registers its test-only classes)
        model = keras.saving.load_model(entry["keras"])
        assert type(model).__name__ == entry["class"], type(model).__name__
        arrays = np.load(entry["npz"])
        inputs = {k[3:]: arrays[k] for k in arrays.files if k.startswith("in:")}
        if entry["kind"] == "dict":
            output = model(inputs)
        elif entry["kind"] == "args":
            output = model(*[inputs[str(i)] for i in range(len(inputs))])
        else:
            output = model(inputs["0"])
        outputs = keras.tree.flatten(output)
        assert len(outputs) == entry["outputs"], f"{len(outputs)} outputs"
        for i, out in enumerate(outputs):
            got = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
            np.testing.assert_allclose(got, arrays[f"out:{i}"], atol=1e-6, rtol=0,
                                       err_msg=f"output {i}")
        results[entry["name"]] = "ok"
    except Exception:
        results[entry["name"]] = traceback.format_exc()
print(json.dumps(results))
"""


def check_reloads_in_fresh_process(saved, timeout=300):
    """Load every entry of ``saved`` in one new process; assert identical outputs for all."""
    assert saved, "nothing was saved"
    manifest = Path(saved[0]["keras"]).parent / "manifest.json"
    manifest.write_text(json.dumps(saved))
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_LOADER % {"tests": str(TESTS_DIR)}),
         str(manifest)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert run.returncode == 0, f"loader failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(results) == {e["name"] for e in saved}
    failed = {name: result for name, result in results.items() if result != "ok"}
    assert not failed, "reloaded in a fresh process, these differ or fail:\n" + "\n".join(
        f"--- {name}\n{result}" for name, result in failed.items())
    return results


# --- test-only owner of a TiedOutput ---------------------------------------------------------------
@keras.saving.register_keras_serializable(package="ptft_tests")
class TiedEmbeddingLM(keras.Model):
    """Embedding + ``TiedOutput`` on its table: how a model owns a TiedOutput (which cannot be
    rebuilt from its own config, having no embedding in it). ids (B, S) -> logits (B, S, V)."""

    def __init__(self, vocabulary_size, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.hidden_dim = vocabulary_size, hidden_dim
        self.embedding = keras.layers.Embedding(vocabulary_size, hidden_dim, name="embedding")
        self.head = TiedOutput(self.embedding, name="tied_output")

    def call(self, token_ids):
        return self.head(self.embedding(token_ids))

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, hidden_dim=self.hidden_dim)
        return config
