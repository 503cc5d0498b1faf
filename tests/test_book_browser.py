"""The real book in a real browser (Debian's headless chromium, opened from file://): maths is
rendered by the local MathJax on the chapter 2 and appendix B pages and their notebooks, and the
full-text search answers in English and Chinese. Skipped where chromium is not installed
(.ci/run installs it)."""

import re
import shutil
import subprocess
import tempfile
from urllib.parse import quote

import pytest

from test_book import build_book

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium fonts-noto-cjk)")
MATH_PAGES = ["en/ch02_math_and_algorithms.html", "zh/ch02_math_and_algorithms.html",
              "en/chB_formulas.html", "notebooks/02_math_and_algorithms.html",
              "notebooks/B_formulas.html"]


def dom_after_scripts(url):
    """The page's DOM once its scripts (MathJax, search) have run."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def prose(dom):
    """The page's visible text outside rendered maths and code (outputs, code cells)."""
    dom = re.sub(r"<(script|style|textarea|pre|code|mjx-container)\b.*?</\1>", " ", dom,
                 flags=re.S | re.I)
    return re.sub(r"<[^>]+>", "", dom)


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    build_dir, _ = build_book(tmp_path_factory.mktemp("real_book") / "_build")
    return build_dir / "html"


@pytest.mark.parametrize("page", MATH_PAGES)
def test_maths_is_rendered(html, page):
    dom = dom_after_scripts((html / page).as_uri())
    assert dom.count("<mjx-container") > 0, f"{page}: no rendered maths"
    assert "<mjx-merror" not in dom, f"{page}: MathJax could not typeset a formula"
    text = prose(dom)
    # raw LaTeX left over: a $\ or \( that MathJax never saw, or a command such as \theta
    # outside maths (what mispaired dollars leave behind)
    leftovers = re.findall(r".{0,30}(?:\$\s*\\|\\[(\[]|\\[A-Za-z]{2,}).{0,30}", text)
    assert not leftovers, f"{page}: raw LaTeX is visible: {leftovers[:3]}"


@pytest.mark.parametrize("query, must_find", [("gradient", "en/ch02_math_and_algorithms.html"),
                                              ("微调", "zh/")])
def test_search_works_from_file_urls(html, query, must_find):
    dom = dom_after_scripts(f"{(html / 'search.html').as_uri()}?q={quote(query)}")
    found = re.findall(r'<li[^>]*>\s*<a href="([^"]+)"', dom.split('id="search-results"', 1)[-1])
    assert found, f"no search results for {query!r}"
    assert any(link.startswith(must_find) for link in found), found
