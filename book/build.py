"""Build the course book with Sphinx (myst-nb + sphinx-book-theme), offline.

    python book/build.py [--en DIR] [--zh DIR] [--notebooks DIR] [--build DIR]

Pages come from book/en/*.md and book/zh/*.md (same file names); notebooks from
book/_build/executed/ (README command 1 executes them there), each falling back to its committed
copy in notebooks/ with the outputs saved in it. They are staged into one source tree,
<build>/src/{en,zh,notebooks}, so that a page's ``../notebooks/X.ipynb`` link resolves from both
languages, with a root page holding the table of contents; then ``sphinx-build -c book`` renders
<build>/html. The notebooks are rendered as they are, never executed.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
REPO = BOOK.parent
# Reading order within a language: front page, chapters and appendices (ch01..ch05, chA, chB:
# digits sort before letters), then the glossary and the errata, then anything else.
FIRST, LAST = ("index",), ("glossary", "errata")


def page_order(stems):
    def key(stem):
        if stem in FIRST:
            return (0, stem)
        if stem in LAST:
            return (2, LAST.index(stem))
        return (1 if stem.startswith("ch") else 3, stem)
    return sorted(stems, key=key)


def title_of(path, fallback):
    found = re.search(r"^#\s+(.+?)\s*#*\s*$", path.read_text(encoding="utf-8"), re.M)
    return found.group(1) if found else fallback


LABEL = re.compile(r"^\(([^()\s]+)\)=[ \t]*$", re.M)


def localise_labels(folder, prefix):
    """Prefix the labels a language's pages define, and their links to them, in the staged copy.

    Sphinx's labels are global: a page and its translation that both say ``(ch02-rezero)=`` keep
    one of the two, and ``ch02_math_and_algorithms.md#ch02-rezero`` then fails in the other
    language. Authors write the same labels in both languages; the Chinese copy gets ``zh-``.
    Only anchors that name a label defined in this language are touched (heading slugs are not).
    """
    pages = sorted(folder.glob("*.md"))
    texts = {page: page.read_text(encoding="utf-8") for page in pages}
    labels = {label for text in texts.values() for label in LABEL.findall(text)}
    if not labels:
        return
    names = "|".join(map(re.escape, sorted(labels, key=len, reverse=True)))
    link = re.compile(rf"(\]\([^()\s#]*#)({names})(?=[)\s])")   # [text](page.md#label)
    role = re.compile(rf"(\{{ref\}}`(?:[^`<]*<)?)({names})(?=>?`)")  # {ref}`label`, {ref}`t <label>`
    for page, text in texts.items():
        text = LABEL.sub(lambda m: f"({prefix}{m.group(1)})=", text)
        text = role.sub(lambda m: m.group(1) + prefix + m.group(2), link.sub(
            lambda m: m.group(1) + prefix + m.group(2), text))
        stat = page.stat()
        page.write_text(text, encoding="utf-8")
        os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # unchanged source: no re-read


def notebook_sources(executed, committed):
    """name -> path: the executed copy where there is one, else the committed notebook."""
    chosen = {p.name: p for p in sorted(committed.glob("*.ipynb"))} if committed.is_dir() else {}
    if executed and executed.is_dir():
        chosen.update({p.name: p for p in sorted(executed.glob("*.ipynb"))})
    return chosen


def stage(en, zh, notebooks, src):
    """Copy the sources into ``src`` and write its root page; returns the toc as {caption: [doc]}."""
    if src.exists():
        shutil.rmtree(src)
    toc = {}
    for lang, folder, caption in (("en", en, "English"), ("zh", zh, "中文")):
        (src / lang).mkdir(parents=True)
        for extra in folder.glob("[!.]*"):  # pages, and images or data they refer to
            copy = shutil.copytree if extra.is_dir() else shutil.copy2  # copy2: keep mtimes,
            copy(extra, src / lang / extra.name)  # so Sphinx rebuilds only what changed
        toc[caption] = [f"{lang}/{stem}" for stem in page_order(p.stem for p in folder.glob("*.md"))]
    localise_labels(src / "zh", "zh-")
    (src / "notebooks").mkdir()
    for name, path in notebooks.items():
        shutil.copy2(path, src / "notebooks" / name)
    # A notebook follows its chapter page in the English toc (ch01_x.md <- 01_x.ipynb).
    english, unclaimed = [], sorted(Path(n).stem for n in notebooks)
    for doc in toc["English"]:
        english.append(doc)
        stem = doc.split("/", 1)[1]
        if stem.startswith("ch") and stem[2:] in unclaimed:
            english.append(notebook_entry(stem[2:]))
            unclaimed.remove(stem[2:])
    toc["English"] = english + [notebook_entry(stem) for stem in unclaimed]
    write_root(src, toc)
    return toc


def notebook_entry(stem):
    # Its own title would repeat the chapter's ("Chapter 1 - ..." twice in the sidebar).
    return f"Notebook: {stem}.ipynb <notebooks/{stem}>"


def write_root(src, toc):
    titles = {lang: title_of(src / lang / "index.md", label) for lang, label in
              (("en", "English"), ("zh", "中文")) if (src / lang / "index.md").is_file()}
    lines = [f"# {titles.get('en', 'Course book')}", ""]
    for lang, label in (("en", "English"), ("zh", "中文")):
        if lang in titles:
            lines.append(f"- **{label}**: [{titles[lang]}]({lang}/index.md)")
    for caption, docs in toc.items():
        lines += ["", "```{toctree}", f":caption: {caption}", ":hidden:", ""] + docs + ["```"]
    (src / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


ASSET = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]*)""",
                   re.I)


def off_machine_assets(html):
    """'page: url' for every <script src>, <link href> or <img src> that points off the machine."""
    return [f"{page.relative_to(html)}: {url}" for page in sorted(html.rglob("*.html"))
            for url in ASSET.findall(page.read_text(encoding="utf-8"))]


def build(en, zh, notebooks, build_dir, sphinx_args=()):
    src, html = build_dir / "src", build_dir / "html"
    stage(en, zh, notebooks, src)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(BOOK),
               "-d", str(build_dir / "doctrees"), *sphinx_args, str(src), str(html)]
    run = subprocess.run(command)
    if run.returncode:
        raise SystemExit(run.returncode)
    remote = off_machine_assets(html)
    if remote:  # e.g. a plotting library's CDN script in a notebook output
        raise SystemExit("the book would load from the network:\n  " + "\n  ".join(remote))
    print(f">> book: {html / 'index.html'}")
    return html


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--en", type=Path, default=BOOK / "en")
    parser.add_argument("--zh", type=Path, default=BOOK / "zh")
    parser.add_argument("--notebooks", type=Path, default=REPO / "notebooks",
                        help="committed notebooks (fallback for any not in --executed)")
    parser.add_argument("--executed", type=Path, default=BOOK / "_build" / "executed")
    parser.add_argument("--build", type=Path, default=BOOK / "_build")
    args, sphinx_args = parser.parse_known_args(argv)
    build(args.en, args.zh, notebook_sources(args.executed, args.notebooks), args.build,
          sphinx_args)


if __name__ == "__main__":
    main()
