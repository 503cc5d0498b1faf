"""Each objective's data transformation on small hand-checked inputs; its model on tiny configs."""

import os

import keras
import keras_hub
import numpy as np
import pytest

from ptft_keras import config, objectives, scratch, tokenizers
from ptft_keras.data import EpochDataset


# --- T5 span corruption ---------------------------------------------------------------------------
def test_apply_span_mask_by_hand():
    tokens = np.arange(10, 20)  # 10 11 12 13 14 15 16 17 18 19
    mask = np.zeros(10, bool)
    mask[[2, 3, 7]] = True  # two spans: (12 13) and (17)
    inputs, targets = objectives.apply_span_mask(tokens, mask, sentinel_ids=[100, 101], eos_id=1)
    assert inputs.tolist() == [10, 11, 100, 14, 15, 16, 101, 18, 19, 1]
    assert targets.tolist() == [100, 12, 13, 101, 17, 1]


def test_span_counts_follow_the_t5_paper():
    # noise = round(L * 0.15), spans = round(noise / 3); at least one of each.
    assert objectives.span_counts(40) == (6, 2)
    assert objectives.span_counts(64) == (10, 3)  # 9.6 -> 10, 3.33 -> 3
    assert objectives.span_counts(20) == (3, 1)
    assert objectives.span_counts(3) == (1, 1)  # 0.45 rounds to 0: clipped up to one noise token


def test_span_corruption_for_a_known_seed_checked_by_hand():
    # L = 40 -> 6 noise tokens in 2 spans, 34 kept tokens in 2 runs. With seed 0 the random
    # segmentations are noise [5, 1] and kept [22, 12]; the sequence alternates kept/noise
    # starting with kept: positions 0-21 kept, 22-26 noise, 27-38 kept, 39 noise.
    tokens = np.arange(100, 140)
    mask = objectives.random_spans_noise_mask(40, np.random.default_rng(0))
    assert np.flatnonzero(mask).tolist() == [22, 23, 24, 25, 26, 39]
    inputs, targets = objectives.span_corruption(tokens, [900, 901, 902], seed=0, eos_id=1)
    assert inputs.tolist() == list(range(100, 122)) + [900] + list(range(127, 139)) + [901, 1]
    assert targets.tolist() == [900, 122, 123, 124, 125, 126, 901, 139, 1]
    # Same seed, same corruption; another seed, other spans.
    again = objectives.span_corruption(tokens, [900, 901, 902], seed=0, eos_id=1)
    assert np.array_equal(again[0], inputs) and np.array_equal(again[1], targets)
    other = objectives.span_corruption(tokens, [900, 901, 902], seed=1, eos_id=1)
    assert not np.array_equal(other[0], inputs)


def test_span_corruption_properties_over_many_seeds():
    tokens = np.arange(1000, 1064)
    sentinels = list(range(10, 20))
    lengths = []
    for seed in range(200):
        mask = objectives.random_spans_noise_mask(64, np.random.default_rng(seed))
        assert mask.sum() == 10 and not mask[0]  # the sequence starts with kept tokens
        starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
        assert len(starts) == 3
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])))  # span starts, ends
        lengths.extend(edges[1::2] - edges[::2])
        inputs, targets = objectives.span_corruption(tokens, sentinels, seed=seed)
        assert len(inputs) == 64 - 10 + 3 and len(targets) == 10 + 3
        # Undo the corruption: every sentinel in the input is replaced by its span.
        spans, current = {}, None
        for t in targets:
            if t in sentinels:
                current = t
                spans[t] = []
            else:
                spans[current].append(t)
        rebuilt = [x for t in inputs for x in (spans[t] if t in sentinels else [t])]
        assert rebuilt == tokens.tolist()
    assert abs(np.mean(lengths) - 10 / 3) < 1e-9  # mean span length = noise / spans exactly


def test_span_corruption_arrays_shift_decoder_inputs():
    blocks = np.arange(5, 5 + 3 * 20).reshape(3, 20)
    x, y, w = objectives.span_corruption_arrays(blocks, np.random.default_rng(0), [1000, 1001], eos_id=1,
                                       pad_id=0)
    assert x["encoder_token_ids"].shape == (3, 20 - 3 + 1 + 1)
    assert y.shape == (3, 3 + 1 + 1) and w.shape == y.shape
    assert (x["decoder_token_ids"][:, 0] == 0).all()
    assert np.array_equal(x["decoder_token_ids"][:, 1:], y[:, :-1])
    assert (y[:, -1] == 1).all() and (x["encoder_token_ids"][:, -1] == 1).all()


# --- XLNet permutation masks ----------------------------------------------------------------------
def test_permutation_masks_properties():
    real = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    for seed in range(20):
        m = objectives.permutation_masks(real, np.random.default_rng(seed), num_predict=3)
        rank, content, query = m["rank"], m["content_mask"], m["query_mask"]
        assert sorted(m["order"].tolist()) == list(range(7))  # a permutation of real tokens
        for i in range(7):
            for j in range(9):
                earlier = real[j] and rank[j] < rank[i]
                assert query[i, j] == earlier  # query stream: strictly earlier in the order
                assert content[i, j] == (earlier or i == j)  # content: earlier or itself
        assert (np.diag(query) == 0).all()  # no token sees itself in the query stream
        assert (content[:, 7:][:7] == 0).all() and (query[:, 7:] == 0).all()  # padding unseen
        # Targets: the last K of the order; each sees exactly the tokens before it.
        targets = m["target_positions"]
        assert targets.tolist() == m["order"][-3:].tolist()
        assert [query[t].sum() for t in targets] == [4, 5, 6]
        assert m["order"][0] not in targets  # the first token has no context to predict from


def test_permutation_lm_arrays_target_mapping_matches_masks():
    ids = np.arange(10, 10 + 2 * 8).reshape(2, 8).astype("int32")
    padding = np.ones((2, 8), bool)
    padding[1, 3:] = False  # three real tokens: only two can be predicted
    x, y, w = objectives.permutation_lm_arrays(ids, padding, np.random.default_rng(0), num_predict=3)
    assert x["target_mapping"].shape == (2, 3, 8)
    assert w.tolist() == [[1, 1, 1], [1, 1, 0]]
    for row in range(2):
        for k in range(3):
            mapped = x["target_mapping"][row, k]
            if w[row, k] == 0:
                assert mapped.sum() == 0
                continue
            position = int(np.argmax(mapped))
            assert mapped.sum() == 1 and y[row, k] == ids[row, position]
            # A target's own token is hidden from its query stream, visible to its content.
            assert x["query_mask"][row, position, position] == 0
            assert x["content_mask"][row, position, position] == 1
        # Targets come in factorization order: each sees strictly more than the previous.
        seen = [x["query_mask"][row, int(np.argmax(x["target_mapping"][row, k]))].sum()
                for k in range(int(w[row].sum()))]
        assert seen == sorted(seen) and len(set(seen)) == len(seen)


def _tiny_xlnet(vocabulary_size=40):
    backbone = keras_hub.models.XLNetBackbone(
        vocabulary_size=vocabulary_size, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32,
    )
    return objectives.PermutationLMPretrainer(backbone)


def test_two_stream_attention_hides_the_target_and_later_tokens():
    config.set_seed(0)
    model = _tiny_xlnet()
    ids = np.array([[7, 8, 9, 10, 11, 12, 13, 14]], "int32")
    x, _, _ = objectives.permutation_lm_arrays(ids, ids > 0, np.random.default_rng(3), num_predict=3)
    order = objectives.permutation_masks(ids[0] > 0, np.random.default_rng(3), 3)["order"].tolist()
    base = np.asarray(model(x))
    # Change one token at a time; a prediction may change only if that token is earlier in the
    # factorization order than the predicted position.
    for position in range(8):
        changed = dict(x, token_ids=x["token_ids"].copy())
        changed["token_ids"][0, position] = 30
        out = np.asarray(model(changed))
        for k in range(3):
            target = int(np.argmax(x["target_mapping"][0, k]))
            visible = order.index(position) < order.index(target)
            moved = not np.allclose(out[0, k], base[0, k], atol=1e-6)
            assert moved == visible, (position, target)


def test_permutation_lm_batch_rows_are_independent():
    # keras-hub 0.32's XLNetBackbone scrambles relative positions for batch > 1; ours must not:
    # a row's logits are the same alone or in a batch.
    config.set_seed(0)
    model = _tiny_xlnet()
    ids = np.random.default_rng(0).integers(5, 40, (3, 8)).astype("int32")
    x, _, _ = objectives.permutation_lm_arrays(ids, ids > 0, np.random.default_rng(0), num_predict=2)
    together = np.asarray(model(x))
    for row in range(3):
        alone = np.asarray(model({k: v[row : row + 1] for k, v in x.items()}))
        assert np.allclose(alone[0], together[row], atol=1e-5)


def test_xlnet_permutation_lm_trains_and_reloads(tmp_path):
    config.set_seed(0)
    model = objectives.compile_lm(_tiny_xlnet(), 5e-3)
    rng = np.random.default_rng(0)
    # Each row repeats one token: any visible context token gives the target away, so the loss
    # falls fast if (and only if) the query stream reads the content stream.
    ids = np.repeat(rng.integers(5, 40, (64, 1)), 12, axis=1).astype("int32")
    data = EpochDataset(lambda r: objectives.permutation_lm_arrays(ids, ids > 0, r, 3), batch_size=16)
    fixed = EpochDataset(lambda r: objectives.permutation_lm_arrays(ids, ids > 0, r, 3), 16,
                           dynamic=False, seed=1)
    before = model.evaluate(fixed, verbose=0)[0]
    model.fit(data, epochs=6, verbose=0)
    after = model.evaluate(fixed, verbose=0)[0]
    assert after < before - 0.5
    path = os.path.join(tmp_path, "xlnet_plm.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    batch = fixed[0][0]
    assert np.allclose(np.asarray(model(batch)), np.asarray(loaded(batch)), atol=1e-5)
    embedding = loaded.backbone.content_query_embedding.word_embed
    assert loaded.lm_head.embedding is embedding  # still tied after reloading


# --- NSP and SOP ----------------------------------------------------------------------------------
def _documents(num_docs=40, seed=0):
    """Documents whose "sentences" name themselves: (doc, index)."""
    lengths = np.random.default_rng(seed).integers(1, 8, num_docs)
    return [[(d, i) for i in range(n)] for d, n in enumerate(lengths)]


def test_nsp_pairs_are_half_true_and_true_pairs_are_consecutive():
    docs = _documents()
    pairs = objectives.sample_nsp_pairs(docs, np.random.default_rng(0))
    expected = sum(len(doc) - 1 for doc in docs)
    assert len(pairs) == expected  # one pair per sentence that has a successor
    labels = np.array([label for _, _, label in pairs])
    assert abs(labels.mean() - 0.5) < 0.1
    for (d, i), (d2, j), label in pairs:
        assert docs[d][i] == (d, i) and j < len(docs[d2])
        if label == 1:
            assert d2 == d and j == i + 1  # truly the next sentence
        else:
            assert d2 != d  # a random sentence from another document
    # Over many draws the true-next rate converges to 1/2.
    many = [p[2] for s in range(20) for p in objectives.sample_nsp_pairs(docs, np.random.default_rng(s))]
    assert abs(np.mean(many) - 0.5) < 0.03


def test_sop_swapped_pairs_are_exact_swaps():
    docs = _documents()
    pairs = objectives.sample_sop_pairs(docs, np.random.default_rng(0))
    labels = np.array([label for _, _, label in pairs])
    assert abs(labels.mean() - 0.5) < 0.1
    for (d, i), (d2, j), label in pairs:
        assert d2 == d  # both halves always from the same document
        assert (i, j) == ((j - 1, j) if label == 1 else (j + 1, j))
    # Same positions, two orders: the first half of a swapped pair is the successor.
    firsts = {(p[0], p[1]) if p[2] else (p[1], p[0]) for p in pairs}
    consecutive = {((d, i), (d, i + 1)) for d, doc in enumerate(docs) for i in range(len(doc) - 1)}
    assert firsts == consecutive


def test_split_sentences():
    assert objectives.split_sentences("Call me Ishmael. Some years ago! Why? 你好。再见！") == [
        "Call me Ishmael.", "Some years ago!", "Why?", "你好。", "再见！"]


def test_pack_pairs_by_hand_and_as_scratch_does():
    ids, segments = tokenizers.pack([[10, 11], [10, 11, 12, 13, 14]], 8, [[20], [20, 21, 22]],
                                    start_id=2, end_id=3, pad_id=0)
    assert ids.tolist() == [[2, 10, 11, 3, 20, 3, 0, 0], [2, 10, 11, 12, 3, 20, 21, 3]]
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]]
    # The NumPy-only chapter-2 packer (scratch.pack_pair) truncates exactly like keras-hub's,
    # ties included (equal lengths: B loses the token).
    rng = np.random.default_rng(0)
    first = [list(rng.integers(5, 50, rng.integers(0, 12))) for _ in range(200)]
    second = [list(rng.integers(5, 50, rng.integers(0, 12))) for _ in range(200)]
    first += [[7] * 6, [7] * 5]
    second += [[9] * 6, [9] * 5]
    ids, segments = tokenizers.pack(first, 10, second, start_id=2, end_id=3, pad_id=0)
    for row, (a, b) in enumerate(zip(first, second)):
        by_hand, seg = scratch.pack_pair(a, b, 10)
        assert ids[row].tolist() == by_hand.tolist(), (a, b)
        assert segments[row].tolist() == seg.tolist()


def _id_documents(num_docs=60, seed=0):
    """Tokenized documents with learnable structure: sentence i of doc d is 4 ids from 10+4i."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(num_docs):
        start = int(rng.integers(0, 5))
        docs.append([list(range(10 + 4 * i, 14 + 4 * i)) for i in range(start, start + 4)])
    return docs


def test_sentence_pair_arrays_and_joint_mlm_nsp_model(tmp_path):
    config.set_seed(0)
    docs = _id_documents()
    x, y, w = objectives.sentence_pair_arrays(docs, np.random.default_rng(0), "nsp", 16, 60, cls_id=2,
                                     sep_id=3, pad_id=0, mask_id=4)
    assert set(x) == {"token_ids", "segment_ids", "padding_mask", "mask_positions"}
    assert set(y) == {"mlm", "nsp"} and y["nsp"].shape == (len(x["token_ids"]),)
    # Masked positions are never [CLS]/[SEP]/[PAD].
    chosen = w["mlm"] > 0
    assert chosen.any() and not np.isin(y["mlm"][chosen], [0, 2, 3]).any()

    backbone = keras_hub.models.BertBackbone(vocabulary_size=60, num_layers=1, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=16, dropout=0.0)
    model = objectives.compile_sentence_pair(objectives.SentencePairPretrainer(backbone, "nsp", dropout=0.0), 5e-3)
    make = lambda r: objectives.sentence_pair_arrays(docs, r, "nsp", 16, 60, 2, 3, 0, 4)  # noqa: E731
    data = EpochDataset(make, batch_size=32)
    fixed = EpochDataset(make, batch_size=32, dynamic=False, seed=1)
    before = model.evaluate(fixed, verbose=0, return_dict=True)
    model.fit(data, epochs=8, verbose=0)
    after = model.evaluate(fixed, verbose=0, return_dict=True)
    assert {"mlm_loss", "nsp_loss", "loss"} <= set(after)
    assert after["loss"] < before["loss"] - 0.5
    assert after["mlm_loss"] < before["mlm_loss"]

    path = os.path.join(tmp_path, "bert_nsp.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    batch = fixed[0][0]
    ours, theirs = model(batch), loaded(batch)
    for key in ("mlm", "nsp"):
        assert np.allclose(np.asarray(ours[key]), np.asarray(theirs[key]), atol=1e-5)
    assert loaded.mlm_head.token_embedding is loaded.backbone.token_embedding


# --- causal language modelling --------------------------------------------------------------------
def test_chunk_token_stream_and_causal_shift():
    blocks = objectives.chunk_token_stream([[5, 6, 7], [8, 9]], block_length=3, separator_id=0)
    assert blocks.tolist() == [[5, 6, 7], [0, 8, 9]]  # the final lone separator is dropped
    x, y, w = objectives.causal_lm_arrays(blocks)
    assert x["token_ids"].tolist() == [[5, 6], [0, 8]]
    assert y.tolist() == [[6, 7], [8, 9]] and w.sum() == 4


@pytest.fixture(scope="module")
def counting_lm():
    """A tiny GPT-2 trained on "every token is the previous one + 1" (ids 5..44)."""
    config.set_seed(0)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=1, num_heads=2,
                                             hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=16, dropout=0.0)
    model = objectives.compile_lm(objectives.CausalLMPretrainer(backbone), 1e-2)
    starts = np.random.default_rng(0).integers(5, 30, (256, 1))
    blocks = (starts + np.arange(13)[None, :]).astype("int32")
    data = EpochDataset(lambda r: objectives.causal_lm_arrays(blocks), batch_size=32, dynamic=False)
    before = objectives.perplexity(model, data)
    model.fit(data, epochs=10, verbose=0)
    return model, data, before


def test_causal_lm_learns_and_perplexity_is_exp_token_loss(counting_lm):
    model, data, before = counting_lm
    after = objectives.perplexity(model, data)
    assert 25 < before < 120  # untrained: about the vocabulary size (50)
    assert after < 2.0
    loss = model.evaluate(data, verbose=0)[0]  # equal-size batches: the mean of batch means
    assert np.isclose(after, np.exp(loss), rtol=1e-3)


def test_generation_strategies(counting_lm):
    model = counting_lm[0]
    prompts = [[10, 11, 12], [20, 21]]  # different lengths: the shorter one is not overwritten
    greedy = objectives.generate(model, prompts, max_length=8)
    assert greedy[0].tolist() == list(range(10, 18))
    assert greedy[1].tolist() == list(range(20, 28))
    # top-k with k=1 and top-p with a tiny p both reduce to greedy decoding.
    assert np.array_equal(objectives.generate(model, prompts, 8, objectives.make_sampler("top_k", k=1)), greedy)
    assert np.array_equal(objectives.generate(model, prompts, 8, objectives.make_sampler("top_p", p=1e-6)), greedy)
    # Sampling at a high temperature: valid ids, prompts kept, reproducible with a seed.
    hot = objectives.generate(model, prompts, 8, objectives.make_sampler("temperature", temperature=5.0, seed=1))
    assert hot[0, :3].tolist() == [10, 11, 12] and hot[1, :2].tolist() == [20, 21]
    assert ((hot >= 0) & (hot < 50)).all()
    assert not np.array_equal(hot, greedy)
    with pytest.raises(ValueError):
        objectives.make_sampler("beam")


# --- feeding -------------------------------------------------------------------------------------
def test_epoch_dataset_static_repeats_dynamic_changes():
    make = lambda r: ({"a": r.integers(0, 1000, (10, 3))}, np.zeros(10), np.ones(10))  # noqa: E731
    static, dynamic = EpochDataset(make, 4, dynamic=False), EpochDataset(make, 4)
    assert len(static) == 3 and static[2][0]["a"].shape == (2, 3)
    s0, d0 = static[0][0]["a"].copy(), dynamic[0][0]["a"].copy()
    static.on_epoch_end()
    dynamic.on_epoch_end()
    assert np.array_equal(static[0][0]["a"], s0)
    assert not np.array_equal(dynamic[0][0]["a"], d0)
    assert np.array_equal(EpochDataset(make, 4)[0][0]["a"], d0)  # same seed, same epoch 0
