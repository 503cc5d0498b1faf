"""Every row of the bad-input table (tests/bad_inputs.py) gets its clear error, before any
training step and with nothing written; the README shows exactly that table."""

import os

import numpy as np
import pytest

import bad_inputs


@pytest.fixture(scope="module")
def ctx():
    return bad_inputs.make_context()


def test_context_vocabulary_is_the_one_the_rows_assume(ctx):
    assert ctx["tok"].vocabulary_size() == bad_inputs.V


@pytest.mark.parametrize("row", bad_inputs.ROWS, ids=[f"{r[0]}: {r[1]}" for r in bad_inputs.ROWS])
def test_bad_input_gets_a_clear_error(ctx, row):
    entry, what, call, message = row
    model = ctx["classifier"]
    before = [np.array(w) for w in model.get_weights()]
    files = sorted(os.listdir(ctx["folder"]))
    with pytest.raises((ValueError, FileNotFoundError, TypeError)) as raised:
        call(ctx)
    assert message in str(raised.value), f"{entry} ({what}): got {raised.value!r}"
    assert "Traceback" not in str(raised.value)
    # Raised before any training step: the classifier's weights did not move; nothing written.
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert sorted(os.listdir(ctx["folder"])) == files


def test_readme_table_is_rendered_from_the_rows():
    text = (bad_inputs.ROOT / "README.md").read_text(encoding="utf-8")
    assert bad_inputs.readme_section(text) == bad_inputs.render(), (
        "README's bad-input table is stale: run python tests/bad_inputs.py")
