"""book/build.py: a tiny book (one page, two notebooks) builds into a working, offline site."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

BUILD = Path(__file__).resolve().parents[1] / "book" / "build.py"
CDN_SCRIPT = '<script src="https://cdn.example.com/plot.js"></script>'


def _write_sources(root):
    pages, notebooks = root / "pages", root / "notebooks"
    pages.mkdir()
    notebooks.mkdir()
    (pages / "index.md").write_text(
        "# Tiny Course\n\nStart with [chapter 1](ch01_intro.md).\n", encoding="utf-8")
    (pages / "ch01_intro.md").write_text(
        "# Chapter 1: Intro\n\nThe loss is $a_i * b_i \\\\ c$ and a table:\n\n"
        "| x | y |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('fenced')\n```\n", encoding="utf-8")
    executed = new_notebook(cells=[
        new_markdown_cell("# Demo notebook\n\n<details><summary>Solution</summary>42</details>"),
        new_code_cell("print('hi')", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="hello from the notebook 42\n")]),
        # An output that would load a script from a CDN: the build must drop it.
        new_code_cell("show()", execution_count=2, outputs=[
            new_output("display_data", data={"text/html": CDN_SCRIPT + "<b>plot</b>"})]),
        # An executed exercise solution: folded into a collapsed block on the page.
        new_code_cell("# Solution to exercise 1\nprint(6 * 7)", execution_count=3,
                      metadata={"tags": ["solution", "hide-input"]},
                      outputs=[new_output("stream", name="stdout", text="solution says 42\n")]),
    ])
    nbformat.write(executed, notebooks / "ch01_demo.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), notebooks / "zz_unrun.ipynb")
    return pages, notebooks


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    pages, notebooks = _write_sources(root)
    out = root / "html"
    run = subprocess.run(
        [sys.executable, str(BUILD), "--pages", str(pages), "--notebooks", str(notebooks),
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out, run.stdout


def test_pages_exist(book):
    out, _ = book
    for name in ("index.html", "ch01_intro.html", "nb_ch01_demo.html", "nb_zz_unrun.html",
                 "ch01_demo.ipynb", "_static/book.css", "_static/notebook.css"):
        assert (out / name).is_file(), name


def test_every_local_link_resolves(book):
    out, _ = book
    for page in out.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r'(?:href|src)="([^"#]+)', text):
            assert "://" not in target, (page.name, target)
            assert (out / target).exists(), (page.name, target)


def test_nav_order_and_prev_next(book):
    out, _ = book
    index = (out / "index.html").read_text(encoding="utf-8")
    nav = re.search(r'<nav class="sidebar">(.*?)</nav>', index, re.S).group(1)
    assert re.findall(r'<li[^>]*><a href="([^"]+)"', nav) == [
        "index.html", "ch01_intro.html", "nb_ch01_demo.html", "nb_zz_unrun.html"]
    chapter = (out / "ch01_intro.html").read_text(encoding="utf-8")
    assert 'class="prev" href="index.html"' in chapter
    assert 'class="next" href="nb_ch01_demo.html"' in chapter
    assert 'class="nb-links"' in chapter  # the chapter links to its notebook
    assert 'href="ch01_intro.html">chapter 1</a>' in index  # .md links now point at .html


def test_content_is_rendered(book):
    out, _ = book
    chapter = (out / "ch01_intro.html").read_text(encoding="utf-8")
    assert "<table>" in chapter and "<pre><code" in chapter and "fenced" in chapter
    assert "$a_i * b_i \\\\ c$" in chapter  # math survives Markdown untouched
    notebook = (out / "nb_ch01_demo.html").read_text(encoding="utf-8")
    assert "hello from the notebook 42" in notebook
    assert "<details><summary>Solution</summary>" in notebook and "<b>plot</b>" in notebook


def test_offline_no_external_scripts_or_styles(book):
    out, stdout = book
    assert "removed" in stdout and "cdn.example.com" in stdout
    for path in out.rglob("*"):
        if path.suffix not in (".html", ".css"):
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script[^>]*\ssrc=[\"']?(https?:)?//", text, re.I), path
        assert not re.search(r"<link[^>]*\shref=[\"']?(https?:)?//", text, re.I), path
        assert not re.search(r"@import|url\([\"']?(https?:)?//", text, re.I), path
        if path.suffix == ".html":
            assert "http://" not in text and "https://" not in text, path  # e.g. a MathJax CDN


def test_solution_cells_are_collapsed_with_their_output(book):
    out, _ = book
    page = (out / "nb_ch01_demo.html").read_text(encoding="utf-8")
    block = re.search(r'<details class="solution"><summary>[^<]*</summary>(.*?)</details>', page,
                      re.S)
    assert block, "the solution cell is not inside a collapsed <details> block"
    assert "solution says 42" in block.group(1) and "6" in block.group(1)
    assert "hello from the notebook" not in block.group(1)  # the other cells stay outside
    assert page.index("hello from the notebook") < page.index('<details class="solution">')


def test_unexecuted_notebook_builds_with_a_warning(book):
    out, stdout = book
    assert re.search(r"WARNING: .*zz_unrun\.ipynb has no outputs", stdout)
    assert "not executed" in (out / "nb_zz_unrun.html").read_text(encoding="utf-8")


def test_refuses_to_empty_a_folder_it_did_not_make(tmp_path):
    pages, notebooks = _write_sources(tmp_path)
    (tmp_path / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [sys.executable, str(BUILD), "--pages", str(pages), "--notebooks", str(notebooks),
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "not made by this script" in run.stderr
    assert (tmp_path / "precious.txt").exists()


def test_appendix_pages_claim_their_lettered_notebooks_and_come_last(tmp_path):
    # chA_*.md <- A_*.ipynb, after the numbered chapters; appendix A must not claim a notebook
    # that merely starts with the letter A.
    pages, notebooks = tmp_path / "pages", tmp_path / "notebooks"
    pages.mkdir()
    notebooks.mkdir()
    for stem, title in (("index", "Book"), ("ch05_trends", "Chapter 5"), ("chB_formulas", "B"),
                        ("chA_tools", "A")):
        (pages / f"{stem}.md").write_text(f"# {title}\n", encoding="utf-8")
    for stem in ("B_formulas", "Attention_demo", "A_tools", "05_trends"):
        nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {stem}")]),
                       notebooks / f"{stem}.ipynb")
    out = tmp_path / "html"
    run = subprocess.run(
        [sys.executable, str(BUILD), "--pages", str(pages), "--notebooks", str(notebooks),
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    index = (out / "index.html").read_text(encoding="utf-8")
    nav = re.search(r'<nav class="sidebar">(.*?)</nav>', index, re.S).group(1)
    assert re.findall(r'<li class="(\w+)[^"]*"><a href="([^"]+)"', nav) == [
        ("page", "index.html"), ("page", "ch05_trends.html"), ("notebook", "nb_05_trends.html"),
        ("page", "chA_tools.html"), ("notebook", "nb_A_tools.html"),
        ("page", "chB_formulas.html"), ("notebook", "nb_B_formulas.html"),
        ("page", "nb_Attention_demo.html")]  # claimed by no page: listed last, on its own
    appendix_a = (out / "chA_tools.html").read_text(encoding="utf-8")
    links = re.search(r'<p class="nb-links">(.*?)</p>', appendix_a).group(1)
    assert re.findall(r'href="([^"]+)"', links) == ["nb_A_tools.html"]
