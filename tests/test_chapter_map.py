"""The README, the package docstring and every notebook's first cell carry the same chapter map."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("chapter_map", ROOT / "scripts" / "chapter_map.py")
chapter_map = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chapter_map)


def test_readme_docstring_and_notebooks_carry_the_same_map():
    expected = chapter_map.block()
    import ptft_keras

    places = {"README.md": (ROOT / "README.md").read_text(), "ptft_keras.__doc__": ptft_keras.__doc__}
    for _, _, name, _ in chapter_map.CHAPTERS:
        nb = json.loads((ROOT / "notebooks" / name).read_text())
        places[name] = "".join(nb["cells"][0]["source"])
    stale = [where for where, text in places.items() if expected not in text]
    assert not stale, f"chapter map out of date in {stale}: run python scripts/chapter_map.py"


def test_map_names_every_notebook_and_only_existing_modules():
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert sorted(nb for _, _, nb, _ in chapter_map.CHAPTERS) == names
    for _, _, _, modules in chapter_map.CHAPTERS:
        for word in modules.replace(",", " ").split():
            if "." in word or (ROOT / "ptft_keras" / word).exists() or (ROOT / "ptft_keras" / f"{word}.py").exists():
                path = ROOT / "ptft_keras" / word.replace(".", "/")
                assert path.exists() or path.with_suffix(".py").exists(), word
