"""The ranges a notebook tells learners to expect hold for its own saved outputs.

Chapter 1's label-budget table states an "*Expected (QUICK ...):*" range for every arm and budget;
the notebook glues (myst-nb) the measured accuracies under keys ``ch1_acc_<arm>_<labels>``. A
range that its own saved run falls outside is stale text: this test fails until one is fixed.
"""

import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
ARM_KEYS = {"from scratch": "scratch", "pre-trained here, frozen": "here",
            "pre-trained at scale, frozen": "scale", "pre-trained at scale, fine-tuned": "scale_ft"}


def glued_values(notebook):
    """{key: float} of every number the notebook glued with myst_nb.glue."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            text = output.get("data", {}).get("application/papermill.record/text/plain")
            if name and text is not None:
                try:
                    values[name] = float(text)
                except ValueError:
                    pass
    return values


def expected_table(notebook, marker="*Expected (QUICK, 3 seeds"):
    """[(arm, labels, low, high)] from the markdown table that follows ``marker``."""
    cell = next(c for c in notebook.cells
                if c.cell_type == "markdown" and c.source.startswith(marker))
    rows = [line.strip().strip("|").split("|") for line in cell.source.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]
    header, body = [h.strip() for h in rows[0]], rows[1:]
    ranges = []
    for row in body:
        labels = int(re.match(r"[\d,]+", row[0].strip()).group().replace(",", ""))
        for arm, text in zip(header[1:], row[1:]):
            found = re.fullmatch(r"\s*(\d+\.\d+)\s*[–-]\s*(\d+\.\d+)\s*", text)
            if found:
                ranges.append((arm, labels, float(found.group(1)), float(found.group(2))))
    return ranges


def test_the_parser_reads_a_range_table():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "*Expected (QUICK, 3 seeds):*\n\n| labels | from scratch | pre-trained here, frozen |\n"
        "|---|---|---|\n| 40 (1%) | 0.50–0.56 | (FULL only) |\n| 1,000 (25%) | 0.58-0.65 | 0.6–0.7 |")])
    assert expected_table(nb) == [("from scratch", 40, 0.50, 0.56), ("from scratch", 1000, 0.58, 0.65),
                                  ("pre-trained here, frozen", 1000, 0.6, 0.7)]


def test_chapter_1_saved_accuracies_fall_in_the_ranges_it_states():
    notebook = nbformat.read(REPO / "notebooks" / "01_foundations.ipynb", as_version=4)
    values = glued_values(notebook)
    ranges = expected_table(notebook)
    assert len(ranges) >= 12, "the expected-range table was not found or not parsed"
    outside = []
    for arm, labels, low, high in ranges:
        value = values[f"ch1_acc_{ARM_KEYS[arm]}_{labels}"]
        if not low <= value <= high:
            outside.append(f"{arm} at {labels} labels: saved {value:.3f}, stated {low}–{high}")
    assert not outside, "stale expected ranges: " + "; ".join(outside)
