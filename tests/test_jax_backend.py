"""The layers, models and objectives that use ``keras.ops`` run on the JAX backend.

Keras fixes its backend when it is first imported, and pytest's process has long imported it on
TensorFlow: ``tests/jax_subset.py`` runs in ONE fresh process with ``KERAS_BACKEND=jax`` (about
30 CPU-seconds: XLA compiles four train steps) and prints ``OK <check>`` or
``FAIL <check>: <error> (file:line)`` per check; each check below is one of its lines. The parity
test recomputes the script's deterministic ops on TensorFlow, here, from the same seeded inputs.
TensorFlow-only parts (``distributed``, ``data.to_dataset``, the string tokenizers) are not run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jax_subset

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("jax_subset.py")
TIMEOUT_S = 240


def _text(output):
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """Runs the script once: {"lines": {check: its output line}, "parity": JSON, "log": text}.

    Past ``TIMEOUT_S`` the script is killed; the checks it had printed still count, the others
    fail as timed out.
    """
    out = tmp_path_factory.mktemp("jax") / "parity.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        stdout, stderr, status = run.stdout, run.stderr, f"rc {run.returncode}"
    except subprocess.TimeoutExpired as error:
        stdout, stderr = _text(error.stdout), _text(error.stderr)
        status = f"killed after {TIMEOUT_S} s (timeout)"
    lines = {}
    for line in stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("OK", "FAIL"):
            lines[rest.split(":", 1)[0]] = line
    log = f"{status}\n--- stdout\n{stdout}\n--- stderr (tail)\n{stderr[-4000:]}"
    parity = json.loads(out.read_text()) if out.exists() else None
    return {"lines": lines, "parity": parity, "log": log}


@pytest.mark.parametrize("check", jax_subset.CHECKS)
def test_runs_on_jax(jax_run, check):
    line = jax_run["lines"].get(check)
    assert line is not None, f"no line for {check!r}:\n{jax_run['log']}"
    assert line.startswith(f"OK {check}:"), f"{line}\n{jax_run['log']}"


def test_jax_matches_tensorflow(jax_run):
    """Same seeded inputs, same numbers: MaskedMeanPooling, SentenceEmbedding, TiedOutput."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"the reference side must run on TensorFlow, this process runs "
                    f"{keras.backend.backend()}")
    assert jax_run["parity"] is not None, f"the script wrote no parity file:\n{jax_run['log']}"
    inputs = {k: np.asarray(v, "float32") for k, v in jax_run["parity"]["inputs"].items()}
    inputs["mask"] = inputs["mask"].astype("int32")
    np.testing.assert_array_equal(inputs["sequence"], jax_subset.parity_inputs()["sequence"])
    on_tf = jax_subset.parity_outputs(inputs)
    for name, value in jax_run["parity"]["outputs"].items():
        on_jax = np.asarray(value, "float32")
        np.testing.assert_allclose(on_jax, on_tf[name], atol=1e-6, rtol=0, err_msg=name)
