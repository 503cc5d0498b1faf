"""Sphinx extension for the bilingual course book.

The English pages live under ``en/``, the Chinese ones under ``zh/`` with the same file names,
and the (English) notebooks under ``notebooks/``. Sphinx knows nothing of languages, so this
adds what a reader of two parallel trees needs: a link to the same page in the other language,
previous/next links that do not jump from the last English page into the first Chinese one, and
``<html lang>`` per page (browsers pick CJK fonts and hyphenation from it).
"""

from html import escape

from sphinx.search.zh import SearchChinese

LANGS = {"en": ("English", "en"), "zh": ("中文", "zh-CN")}


def language_of(docname):
    """'en' or 'zh' for a page, 'en' for a notebook, None for the language-neutral root."""
    top = docname.split("/", 1)[0]
    if top in LANGS:
        return top
    return "en" if top == "notebooks" else None


def counterparts(docname, found_docs):
    """(docname, label) of the pages a reader of ``docname`` may want in the other language."""
    top, _, name = docname.partition("/")
    if top in LANGS:
        other = "zh" if top == "en" else "en"
        return [(f"{other}/{name}", LANGS[other][0])] if f"{other}/{name}" in found_docs else []
    if top == "notebooks":
        # Notebooks stay English: they point at their chapter page (01_x.ipynb <- ch01_x.md).
        pages = [(f"en/ch{name}", "Chapter page"), (f"zh/ch{name}", "本章正文 (中文)")]
        return [(doc, label) for doc, label in pages if doc in found_docs]
    return []


def _page_context(app, pagename, templatename, context, doctree):
    if doctree is None:  # search page, genindex: no body to add to
        return
    links = counterparts(pagename, app.env.found_docs)
    if links:
        anchors = " · ".join(
            f'<a class="ptft-lang-link" href="{escape(app.builder.get_relative_uri(pagename, doc))}"'
            f' hreflang="{LANGS[language_of(doc)][1]}">{escape(label)}</a>' for doc, label in links)
        context["body"] = (f'<nav class="ptft-lang" aria-label="Language / 语言">{anchors}</nav>\n'
                           + context.get("body", ""))
    lang = language_of(pagename)
    if lang:
        context["language"] = context["lang_attr"] = LANGS[lang][1]
        _, prev, nxt = _relations(app).get(pagename, (None, None, None))
        for rel, doc in (("prev", prev), ("next", nxt)):
            if doc and language_of(doc) not in (None, lang):
                context[rel] = None


def _relations(app):
    """docname -> [parent, previous, next] in reading order, computed once per build."""
    if getattr(app, "_ptft_relations", None) is None:
        app._ptft_relations = app.env.collect_relations()
    return app._ptft_relations


def _repaste_after_notebook_change(app, env, added, changed, removed):
    # myst-nb pastes a number glued in another document (``{glue:text}`nb.ipynb::key```) when the
    # page is written, so an incremental build would keep a page's old number after only its
    # notebook changed: re-read every page then (pages are cheap, notebooks are not).
    if any(doc.startswith("notebooks/") for doc in added | changed | removed):
        return [doc for doc in env.found_docs if not doc.startswith("notebooks/")]
    return []


class ChineseAndEnglishSearch(SearchChinese):
    """Sphinx's Chinese search (jieba for Chinese words, the English stemmer for English ones).

    Sphinx 9.0 names the browser-side stemmer after ``language_name`` and so writes
    ``window.Stemmer = ChineseStemmer``, a class that does not exist: every search stalls at
    "Searching..." (sphinx-doc/sphinx#14229). The stemmer it ships for zh is the English one.
    """

    language_name = "English"


def setup(app):
    app.add_search_language(ChineseAndEnglishSearch)
    app.connect("html-page-context", _page_context)
    app.connect("env-get-outdated", _repaste_after_notebook_change)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
