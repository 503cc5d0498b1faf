"""Build the course book -- Markdown pages plus executed notebooks -- into a static HTML site.

    python book/build.py [--pages DIR] [--notebooks DIR] [--out DIR]

Pages come from ``book/en/*.md`` (index.md first, then by file name) and notebooks from
``notebooks/*.ipynb``; a notebook belongs to the page whose name prefix it shares
(``ch03_practice.md`` <- ``03_practice.ipynb``, ``ch03b_project.ipynb``; appendices are lettered,
``chA_tools.md`` <- ``A_tools.ipynb``, and sort after the numbered chapters). The site works
offline: nothing is fetched at build or view time. There is no offline MathJax to ship (JupyterLab
bundles its copy inside its own app code), so formulas are shown as their LaTeX source.
"""

import argparse
import html
import re
import shutil
from pathlib import Path

import markdown
import nbformat
from nbconvert import HTMLExporter

BOOK = Path(__file__).resolve().parent
MARKER = ".ptft-book"  # marks a folder this script made, and may therefore empty
# TeX-style math: $$display$$, or $inline$ with no space just inside the dollars (so "$ pip"
# and "costs $5 or $10" are left alone).
MATH = re.compile(r"\$\$.+?\$\$|\$(?=[^\s$])[^$\n]+?(?<=[^\s\\])\$(?!\d)", re.S)
EXTERNAL_TAG = re.compile(r"""<(script|link)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//[^>]*>"""
                          r"""(?:\s*</script>)?""", re.I)


def markdown_to_html(text):
    """Markdown -> HTML, with math kept verbatim (Markdown would eat its backslashes and stars)."""
    stash = []

    def keep(match):
        stash.append(match.group(0))
        return f"MATHSTASH{len(stash) - 1}X"

    body = markdown.markdown(MATH.sub(keep, text), extensions=["tables", "fenced_code", "toc"])

    def restore(match):
        tex = stash[int(match.group(1))]
        kind = "math display" if tex.startswith("$$") else "math"
        return f'<span class="{kind}">{html.escape(tex)}</span>'

    body = re.sub(r"MATHSTASH(\d+)X", restore, body)
    # Links written for the repository (page.md, ../notebooks/x.ipynb) point into the site.
    body = re.sub(r'href="\.\./notebooks/([^"/]+)\.ipynb"', r'href="nb_\1.html"', body)
    return re.sub(r'href="([^":/]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)


def link(entry, text=None, cls=None):
    attr = f' class="{cls}"' if cls else ""
    return f'<a{attr} href="{entry["file"]}">{text or html.escape(entry["title"])}</a>'


def title_of(text, fallback):
    found = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.M)
    return found.group(1).strip() if found else fallback


def collect(pages_dir, notebooks_dir):
    """The site's pages in reading order: dicts with file, title, kind, source (and parent)."""
    pages = sorted(pages_dir.glob("*.md"), key=lambda p: (p.stem != "index", p.name))
    notebooks = sorted(notebooks_dir.glob("*.ipynb")) if notebooks_dir.is_dir() else []
    site = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        entry = dict(file=page.stem + ".html", title=title_of(text, page.stem), kind="page",
                     source=page, text=text, notebooks=[])
        # ch03_practice.md claims 03_practice.ipynb (and ch03_*.ipynb); ch1 must not claim ch10_x.
        # Appendices are lettered (chA_tools.md <- A_tools.ipynb): a letter must not be followed
        # by another letter, or appendix A would claim "Attention_demo.ipynb".
        number = page.stem.split("_")[0].removeprefix("ch")
        follow = r"(?!\d)" if number[-1:].isdigit() else r"(?![A-Za-z\d])"
        prefix = r"(?:ch)?" + re.escape(number) + follow
        mine = [nb for nb in notebooks if page.stem != "index" and re.match(prefix, nb.stem)]
        entry["notebooks"] = [notebook_entry(nb, parent=entry) for nb in mine]
        notebooks = [nb for nb in notebooks if nb not in mine]
        site += [entry] + entry["notebooks"]
    # Notebooks no page claims still get a page, at the end.
    return site + [notebook_entry(nb, parent=None) for nb in notebooks]


def notebook_entry(path, parent):
    nb = nbformat.read(path, as_version=4)
    first_md = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    executed = not code or any(c.outputs for c in code)
    if not executed:
        print(f"WARNING: {path} has no outputs (not executed?): its page shows the code only. "
              f"Execute the notebooks first, e.g. jupyter nbconvert --execute --inplace {path}")
    return dict(file=f"nb_{path.stem}.html", title=title_of(first_md, path.stem), kind="notebook",
                source=path, nb=nb, parent=parent, executed=executed)


def render_cells(nb, exporter):
    """The notebook's cells as HTML; a code cell tagged "solution" (an executed exercise
    solution) is folded into a collapsed <details> block, the way the notebooks hide it."""
    parts, run = [], []

    def export(cells):
        return exporter.from_notebook_node(nbformat.v4.new_notebook(cells=cells,
                                                                    metadata=nb.metadata))[0]

    for cell in nb.cells:
        if "solution" in cell.get("metadata", {}).get("tags", []):
            if run:
                parts.append(export(run))
                run = []
            parts.append('<details class="solution"><summary>Solution (executed)</summary>'
                         f"{export([cell])}</details>")
        else:
            run.append(cell)
    if run:
        parts.append(export(run))
    return "".join(parts)


def render_notebook(entry, exporter):
    cells = render_cells(entry["nb"], exporter)
    name = entry["source"].name
    back = f" &middot; part of {link(entry['parent'])}" if entry["parent"] else ""
    state = "Executed notebook" if entry["executed"] else "Notebook (not executed: no outputs)"
    header = (f'<p class="nb-source">{state} <code>notebooks/{name}</code>'
              f' (<a href="{name}" download>download</a>){back}</p>')
    return header + f'<div class="jp-Notebook">{cells}</div>'


def render_page(entry):
    body = markdown_to_html(entry["text"])
    if entry["notebooks"]:
        links = ", ".join(map(link, entry["notebooks"]))
        box = f'<p class="nb-links">Executed notebook{"s" * (len(entry["notebooks"]) > 1)}: {links}</p>'
        body = body.replace("</h1>", "</h1>\n" + box, 1) if "</h1>" in body else box + body
    return body


def layout(entry, body, site, book_title):
    def nav_item(e):  # a chapter's notebooks are indented under it; the front page is "Home"
        label = "Home" if e["source"].name == "index.md" else e["title"]
        kind = "notebook" if e.get("parent") else "page"
        return f'<li class="{kind}{" current" * (e is entry)}">{link(e, html.escape(label))}</li>'

    nav = "\n".join(map(nav_item, site))
    i = site.index(entry)
    prev = link(site[i - 1], "&larr; " + html.escape(site[i - 1]["title"]), "prev") if i else ""
    nxt = (link(site[i + 1], html.escape(site[i + 1]["title"]) + " &rarr;", "next")
           if i + 1 < len(site) else "")
    css = '<link rel="stylesheet" href="_static/notebook.css">\n' * (entry["kind"] == "notebook")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(entry["title"])} &middot; {html.escape(book_title)}</title>
{css}<link rel="stylesheet" href="_static/book.css">
</head><body>
<nav class="sidebar"><a class="book-title" href="{site[0]["file"]}">{html.escape(book_title)}</a>
<ul>
{nav}
</ul></nav>
<main class="{entry["kind"]}">
{body}
<footer class="prev-next">{prev}{nxt}</footer>
</main></body></html>
"""


def notebook_css(exporter):
    """JupyterLab's notebook styles plus code highlighting, as one local file."""
    static = next(Path(p) / "static" for p in exporter.template_paths
                  if (Path(p) / "static" / "index.css").is_file())
    _, resources = exporter.from_notebook_node(nbformat.v4.new_notebook())
    parts = [(static / name).read_text(encoding="utf-8") for name in ("index.css", "theme-light.css")]
    return "\n".join(parts + list(resources["inlining"]["css"]))


def build(pages_dir, notebooks_dir, out):
    if out.exists():
        if not (out / MARKER).exists() and any(out.iterdir()):
            raise SystemExit(f"{out} exists and was not made by this script: choose another --out.")
        shutil.rmtree(out)
    (out / "_static").mkdir(parents=True)
    (out / MARKER).touch()
    site = collect(pages_dir, notebooks_dir)
    if not site:
        raise SystemExit(f"nothing to build: no {pages_dir}/*.md and no {notebooks_dir}/*.ipynb")
    book_title = site[0]["title"] if site[0]["source"].stem == "index" else "Course book"
    # The lab template's cell markup without its page head: the head is where the CDN scripts
    # (MathJax, require.js, mermaid) live, and our layout() writes its own.
    exporter = HTMLExporter(template_name="lab", template_file="base.html.j2")
    shutil.copy(BOOK / "book.css", out / "_static" / "book.css")
    (out / "_static" / "notebook.css").write_text(notebook_css(exporter), encoding="utf-8")
    for extra in pages_dir.glob("[!.]*"):  # images and other files the pages refer to
        if extra.suffix != ".md":
            copy = shutil.copytree if extra.is_dir() else shutil.copy
            copy(extra, out / extra.name)
    for entry in site:
        if entry["kind"] == "notebook":
            body = render_notebook(entry, exporter)
            shutil.copy(entry["source"], out / entry["source"].name)
        else:
            body = render_page(entry)
        page = layout(entry, body, site, book_title)
        for tag in EXTERNAL_TAG.finditer(page):  # e.g. a plotting library's CDN script in an output
            print(f"WARNING: {entry['file']}: removed {tag.group(0)[:80]} (the book stays offline)")
        (out / entry["file"]).write_text(EXTERNAL_TAG.sub("", page), encoding="utf-8")
    print(f"built {len(site)} pages into {out}/index.html")
    return site


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=Path, default=BOOK / "en")
    parser.add_argument("--notebooks", type=Path, default=BOOK.parent / "notebooks")
    parser.add_argument("--out", type=Path, default=BOOK / "_build" / "html")
    args = parser.parse_args(argv)
    build(args.pages, args.notebooks, args.out)


if __name__ == "__main__":
    main()
