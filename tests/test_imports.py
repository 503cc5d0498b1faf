"""The package's import graph: no cycles, a TensorFlow-free light side, a complete registry.

Every check runs in a fresh Python process (pytest's own has long imported everything).
TensorFlow takes seconds to import, so the Keras-side modules share ONE process that removes
every ``ptft_keras`` module from ``sys.modules`` before importing the next one (TensorFlow and
Keras stay loaded): each module is then the first ``ptft_keras`` module imported, which is
where an import cycle shows (ImportError / AttributeError on a partially initialised module).
Modules that import without Keras get one fresh process each.
"""

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ptft_keras"
SUBPACKAGES = ("data", "models", "objectives", "finetuning", "experiments", "scratch")
HEAVY = ("tensorflow", "keras", "keras_hub")


def package_modules():
    """Every module of ptft_keras, found on disk (importing packages to walk them would load TF)."""
    names = ["ptft_keras"]

    def walk(path, prefix):
        for info in pkgutil.iter_modules([str(path)]):
            names.append(prefix + info.name)
            if info.ispkg:
                walk(path / info.name, f"{prefix}{info.name}.")

    walk(PACKAGE, "ptft_keras.")
    return sorted(names)


def run_python(code, timeout=300):
    """Run ``code`` in a fresh interpreter at the repository root; its last stdout line as JSON."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                         timeout=timeout)
    assert run.returncode == 0, f"subprocess failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


# Imports every module with tensorflow / keras / keras_hub blocked: those that still import are
# the light ones. Cheap (TensorFlow never loads).
CLASSIFY = """
import importlib, json, sys, traceback
BLOCKED = {blocked!r}

class Blocked(ImportError):
    pass

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise Blocked(name)
        return None

sys.meta_path.insert(0, Blocker())
light, heavy, errors = [], [], {{}}
for name in {modules!r}:
    for key in [k for k in sys.modules if k == "ptft_keras" or k.startswith("ptft_keras.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
        light.append(name)
    except Blocked:
        heavy.append(name)
    except Exception:
        errors[name] = traceback.format_exc()
print(json.dumps({{"light": light, "heavy": heavy, "errors": errors}}))
"""

# One process for the Keras side: registry and dir() after ``from ptft_keras import models``,
# then every module imported as the first ptft_keras module.
KERAS_SIDE = """
import importlib, json, sys, traceback
import keras

def registered():
    return sorted(k for k in keras.saving.get_custom_objects() if k.startswith("ptft_keras>"))

from ptft_keras import models
import ptft_keras
after_models = registered()
listing = dir(ptft_keras)
errors = {{}}
for name in {modules!r}:
    for key in [k for k in sys.modules if k == "ptft_keras" or k.startswith("ptft_keras.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except Exception:
        errors[name] = traceback.format_exc()
print(json.dumps({{"after_models": after_models, "after_all": registered(), "dir": listing,
                  "errors": errors}}))
"""


@pytest.fixture(scope="module")
def modules():
    return package_modules()


@pytest.fixture(scope="module")
def classified(modules):
    return run_python(CLASSIFY.format(blocked=HEAVY, modules=modules))


@pytest.fixture(scope="module")
def keras_side(modules):
    return run_python(KERAS_SIDE.format(modules=modules))


def test_module_list_is_complete(modules):
    assert "ptft_keras.finetuning.strategies" in modules and "ptft_keras._compat" in modules
    assert {f"ptft_keras.{name}" for name in SUBPACKAGES} <= set(modules)


def test_light_modules_import_alone_in_a_fresh_process(classified):
    assert not classified["errors"], "\n".join(
        f"{name}:\n{tb}" for name, tb in classified["errors"].items())
    failures = {}
    for name in classified["light"]:
        run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                             text=True, cwd=ROOT, timeout=120)
        if run.returncode:
            failures[name] = run.stderr[-2000:]
    assert not failures, "\n".join(f"import {name} failed:\n{err}" for name, err in failures.items())


def test_keras_modules_import_alone_no_cycles(classified, keras_side):
    assert classified["heavy"], "no module imports Keras? the classification is broken"
    assert not keras_side["errors"], "\n".join(
        f"import {name} (first ptft_keras module of the process) failed:\n{tb}"
        for name, tb in keras_side["errors"].items())


@pytest.mark.parametrize("name", ["ptft_keras.scratch", "ptft_keras.data", "ptft_keras.config"])
def test_light_side_never_imports_tensorflow(classified, name):
    assert name in classified["light"], f"{name} cannot import without Keras/TensorFlow"


def test_light_side_leaves_tensorflow_and_keras_unloaded():
    loaded = run_python(f"""
        import json, sys
        import ptft_keras.scratch, ptft_keras.data, ptft_keras.config
        import ptft_keras
        ptft_keras.scratch, ptft_keras.data, ptft_keras.config  # the lazy attributes too
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    assert loaded == [], f"importing scratch / data / config loaded {loaded}"


def test_models_import_registers_every_class(keras_side):
    after_models, after_all = keras_side["after_models"], keras_side["after_all"]
    assert "ptft_keras>TransformerBackbone" in after_models
    missing = sorted(set(after_all) - set(after_models))
    assert not missing, (
        f"registered only once their module is imported, so load_model after "
        f"`from ptft_keras import models` cannot read them: {missing}")
    assert len(after_models) >= 20, after_models


def test_dir_lists_the_subpackages(keras_side):
    listing = set(keras_side["dir"])
    assert set(SUBPACKAGES) <= listing, sorted(set(SUBPACKAGES) - listing)
    top_level = {p.stem for p in PACKAGE.iterdir()
                 if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert top_level <= listing, f"dir(ptft_keras) misses {sorted(top_level - listing)}"


def test_native_stderr_silenced_hides_descriptor_2_only_inside_the_block():
    script = (
        "import os, sys\n"
        "from ptft_keras import config\n"
        "with config.native_stderr_silenced():\n"
        "    os.write(2, b'HIDDEN\\n')\n"
        "os.write(2, b'SHOWN\\n')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "SHOWN" in run.stderr and "HIDDEN" not in run.stderr
