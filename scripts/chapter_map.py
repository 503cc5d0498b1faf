"""The course's chapter map (chapter -> notebook -> modules), written into the README, the package
docstring and each notebook's first cell from this one table; ``tests/test_book.py`` checks they
agree. Run ``python scripts/chapter_map.py`` after changing the table."""

import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTERS = [
    ("1", "foundations: what pre-training buys, seven families", "01_foundations.ipynb",
     "objectives (word_vectors, mlm, all seven families), models, finetuning, experiments.label_budget"),
    ("2", "mathematics and algorithms, fine-tuning strategies", "02_math_and_algorithms.ipynb",
     "scratch (NumPy only), finetuning (six strategies), optimizers"),
    ("3", "practice: pre-train, fine-tune, a sentiment project", "03_practice.ipynb",
     "tokenizers, models, objectives.mlm, finetuning, evaluation, models.minilm"),
    ("4", "multi-task learning, cross-domain fine-tuning", "04_multitask_and_domains.ipynb",
     "multitask, domain, layers, experiments.single_vs_multi"),
    ("5", "trends: scaling, distributed, CLIP, applications", "05_trends.ipynb",
     "scaling, experiments.scaling_grid, distributed, models.clip, data.sensors, data.finance"),
    ("A", "tools and resources", "A_tools_and_resources.ipynb", "config, data"),
    ("B", "every formula next to its code", "B_formulas.ipynb", "scratch and the modules above"),
]
BEGIN, END = "<!-- chapter-map -->", "<!-- /chapter-map -->"


def markdown_table():
    rows = ["| chapter | notebook | modules (`ptft_keras.`…) |", "|---|---|---|"]
    rows += [f"| {n} — {title} | `notebooks/{nb}` | {mods} |" for n, title, nb, mods in CHAPTERS]
    return "\n".join(rows)


def block():
    return f"{BEGIN}\n**Chapter map**\n\n{markdown_table()}\n{END}"


def write():
    for path in (ROOT / "README.md", ROOT / "ptft_keras" / "__init__.py"):
        text = path.read_text()
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block(), text, flags=re.S)
        path.write_text(text)
    for _, _, name, _ in CHAPTERS:
        path = ROOT / "notebooks" / name
        nb = json.loads(path.read_text())
        first = "".join(nb["cells"][0]["source"])
        if BEGIN in first:
            first = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), block(), first, flags=re.S)
        else:
            first = first.rstrip("\n") + "\n\n" + block()
        nb["cells"][0]["source"] = first.splitlines(keepends=True)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write()
