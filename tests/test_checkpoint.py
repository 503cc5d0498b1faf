"""The shipped course checkpoint: verified, loadable, and what its provenance says."""

import json

import numpy as np
import pytest

from ptft_keras import data, models
from ptft_keras.data import loaders


@pytest.fixture(scope="module")
def checkpoint():
    return models.load_course_checkpoint()


def test_checkpoint_loads_and_encodes(checkpoint):
    backbone, tok, provenance = checkpoint
    assert isinstance(backbone, models.TransformerBackbone)
    assert tok.vocabulary_size() == provenance["vocabulary_size"] == backbone.vocabulary_size
    S = provenance["sequence_length"]
    ids = tok.encode(["a fine film with a dull ending"], sequence_length=S)
    out = np.asarray(backbone(ids))
    assert out.shape == (1, S, backbone.hidden_dim) and np.isfinite(out).all()


def test_provenance_matches_the_files_and_left_the_plateau(checkpoint):
    _, _, provenance = checkpoint
    folder = data.data_dir() / "checkpoints" / "en_mlm"
    for name, digest in provenance["sha256"].items():
        assert loaders._sha256(folder / name) == digest
    entries = data.manifest()["files"]
    assert loaders._sha256(folder / "provenance.json") == entries[
        "checkpoints/en_mlm/provenance.json"]["sha256"]
    curve = provenance["curve"]
    assert len(curve) == provenance["epochs"]
    # The loss curve falls, and the end is far below the unigram plateau (issue 11's target).
    assert curve[-1]["heldout_perplexity"] < curve[0]["heldout_perplexity"]
    assert curve[-1]["heldout_perplexity"] < provenance["unigram_perplexity"] / 10
    assert json.loads(json.dumps(provenance["recipe"]))["local_kernel_size"] == 3
