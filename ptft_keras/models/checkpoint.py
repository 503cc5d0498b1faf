"""The course checkpoint: an encoder pre-trained by the course's own code, shipped in ``data/``.

``scripts/pretrain_checkpoint.py`` writes it (recipe, corpus, steps, wall time and the held-out
loss curve go to ``provenance.json``) and lists its three files with their sha256 in
``data/MANIFEST.json``; ``load_course_checkpoint`` checks them before loading anything.

>>> backbone, tok, provenance = load_course_checkpoint()
>>> ids = tok.encode(["a fine film"], sequence_length=provenance["sequence_length"])
>>> backbone(ids).shape          # (1, 48, 128)
"""

import json

from ptft_keras import saving, tokenizers
from ptft_keras.data import DataError, data_dir, verify

FILES = ("backbone.keras", "vocab.txt", "provenance.json")


def load_course_checkpoint(name="en_mlm"):
    """Load ``data/checkpoints/<name>``: ``(backbone, WordPieceTokenizer, provenance dict)``.

    Every file is checked against its sha256 in the manifest first: a missing, changed or
    damaged file raises an error naming it and the command that rebuilds it.
    """
    folder = f"checkpoints/{name}"
    rebuild = (f"rebuild it with `python scripts/pretrain_checkpoint.py --out "
               f"{data_dir() / folder}` (or restore it with `git checkout -- data/{folder}`)")
    paths = {}
    for filename in FILES:
        try:
            paths[filename] = verify(f"{folder}/{filename}")
        except FileNotFoundError as err:
            raise FileNotFoundError(f"Course checkpoint {name!r}: {data_dir() / folder / filename} "
                                    f"is missing; {rebuild}.") from err
        except DataError as err:  # not in the manifest, or another sha256
            raise DataError(f"Course checkpoint {name!r}: {data_dir() / folder / filename} "
                            f"cannot be verified against data/MANIFEST.json ({err}). It was "
                            f"changed or is damaged: {rebuild}.") from err
    with open(paths["provenance.json"], encoding="utf-8") as handle:
        provenance = json.load(handle)
    backbone = saving.load_model(paths["backbone.keras"])
    tok = tokenizers.WordPieceTokenizer.load(paths["vocab.txt"])
    return backbone, tok, provenance
