"""CBOW word-vector pre-training (objectives/word_vectors.py): the examples it draws, and that it
learns co-occurrence on a tiny synthetic corpus where the answer is known."""

import numpy as np
import pytest

from ptft_keras import models, objectives
from ptft_keras.objectives import word_vectors


def test_cbow_arrays_put_the_centre_first_and_its_neighbours_in_the_context():
    stream = np.arange(5, 25, dtype="int32")          # 20 distinct tokens, in order
    x, y = objectives.cbow_arrays(stream, np.random.default_rng(0), 30, window=2, negatives=3,
                                  subsample=0)
    assert x["context"].shape == (16, 4) and x["candidates"].shape == (16, 4) and y.shape == (16, 4)
    centres = x["candidates"][:, 0]
    np.testing.assert_array_equal(centres, stream[2:-2])
    np.testing.assert_array_equal(x["context"], np.stack([centres - 2, centres - 1, centres + 1,
                                                         centres + 2], axis=1))
    assert (y[:, 0] == 1).all() and (y[:, 1:] == 0).all()
    assert x["candidates"][:, 1:].min() >= 5                 # noise only from tokens that occur


def test_cbow_arrays_subsample_frequent_tokens_and_repeat_for_a_seed():
    rng = np.random.default_rng(1)
    stream = np.where(rng.random(20_000) < 0.5, 5, rng.integers(6, 500, 20_000)).astype("int32")
    x, _ = objectives.cbow_arrays(stream, np.random.default_rng(2), 500, window=2, subsample=1e-3)
    share = np.mean(x["candidates"][:, 0] == 5)
    assert share < 0.2, f"token 5 is half the stream; after subsampling it is {share:.2f}"
    again, _ = objectives.cbow_arrays(stream, np.random.default_rng(2), 500, window=2,
                                      subsample=1e-3)
    np.testing.assert_array_equal(x["context"], again["context"])


def test_token_stream_drops_special_tokens():
    ids = np.array([[2, 7, 8, 3, 0], [2, 9, 1, 3, 0]])
    np.testing.assert_array_equal(objectives.token_stream(ids), [7, 8, 9])


@pytest.mark.parametrize("bad, message", [
    (dict(token_ids=np.zeros((0, 4), "int32")), "no tokens"),
    (dict(window=0), "window must be an int >= 1"),
    (dict(token_ids=np.full((2, 4), 99)), "does not fit"),
    (dict(token_ids=np.array([[5, 6, 7]])), "more than 10 tokens"),
])
def test_cbow_dataset_bad_input(bad, message):
    kwargs = dict(token_ids=np.random.default_rng(0).integers(5, 40, (20, 8)), vocabulary_size=40)
    with pytest.raises(ValueError, match=message):
        objectives.CBOWDataset(**{**kwargs, **bad})


def test_word_vectors_learn_which_tokens_share_contexts():
    # Two "topics": sentences draw their tokens from 5-14 or from 15-24, never both. CBOW must
    # put tokens of one topic closer to each other than to the other topic's tokens.
    rng = np.random.default_rng(0)
    topic = rng.integers(0, 2, 600)
    rows = 5 + 10 * topic[:, None] + rng.integers(0, 10, (600, 12))
    backbone = models.LSTMBackbone(25, embedding_dim=16, hidden_dim=8)
    pretrainer = objectives.WordVectorPretrainer(backbone)
    batches = objectives.CBOWDataset(rows, 25, window=2, negatives=3, subsample=0, batch_size=256)
    history = pretrainer.fit(batches, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    vectors = np.asarray(backbone.token_embedding.embeddings)[5:25]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = np.equal.outer(np.arange(20) // 10, np.arange(20) // 10) & ~np.eye(20, dtype=bool)
    assert cosine[same].mean() > cosine[~same & ~np.eye(20, dtype=bool)].mean() + 0.5
