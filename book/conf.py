"""Sphinx configuration of the course book (Jupyter Book 1's engine: myst-nb + sphinx-book-theme).

Used by ``python book/build.py``, which stages the pages and notebooks into one source tree and
runs ``sphinx-build -c book``. Everything the site loads is copied into it: nothing comes from the
network at build or view time.
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "Pre-training and Fine-tuning Foundation Models with Keras"
html_title = "Pre-training & Fine-tuning · 预训练与微调"
author = "ptft_keras"
copyright = "ptft_keras authors"

extensions = [
    "myst_nb",                 # MyST Markdown pages + notebooks (brings myst_parser)
    "sphinx_togglebutton",     # ``:class: dropdown`` admonitions in pages
    "sphinx_copybutton",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax instead of a CDN
    "ptft_book",               # language switch, per-language previous/next (book/_ext)
]
root_doc = "index"
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["**/.ipynb_checkpoints"]

# Pages and notebooks write maths as $...$ / $$...$$ and amsmath environments. A dollar with a
# digit outside it is money ("costs $5 or $10"), not maths.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_dmath_allow_digits = False
# Jupyter renders $$...$$ inside a paragraph or list item as displayed maths, and the notebooks
# do that; without this, myst pairs those dollars as inline maths and everything after is garbled.
myst_dmath_double_inline = True
myst_heading_anchors = 3

# Notebooks are rendered from their saved outputs (README command 1 executed them): never again.
nb_execution_mode = "off"
nb_merge_streams = True

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": False,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "show_prev_next": True,
}
html_static_path = ["_static"]
html_css_files = ["ptft.css"]
html_show_sourcelink = False
# One search index for both languages: Sphinx's Chinese indexer segments Chinese with jieba
# (without it every run of Chinese characters between punctuation is one "word") and stems
# English words with the same English stemmer as language "en".
html_search_language = "zh"
try:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is not a build message
except ImportError:
    pass
