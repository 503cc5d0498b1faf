"""The pre-training recipe pieces: the locality prior and the unigram-plateau yardstick."""

import numpy as np

from ptft_keras import layers, models, objectives
from ptft_keras.experiments import recipe
from ptft_keras.finetuning import strategies


def test_local_mixing_starts_as_identity_and_mixes_only_real_neighbours():
    x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], "int32")
    layer = layers.LocalMixing(kernel_size=3)
    np.testing.assert_allclose(layer(x, padding_mask=mask), x)  # zero kernel: identity
    kernel = np.random.default_rng(1).normal(size=(3, 4, 1)).astype("float32")
    layer.conv.kernel.assign(kernel)
    out = np.asarray(layer(x, padding_mask=mask))
    # Reference: LayerNorm, zero the padding, "same" depthwise convolution, residual.
    h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12)
    h = np.pad(h * mask[..., None], ((0, 0), (1, 1), (0, 0)))
    conv = sum(h[:, k:k + 6] * kernel[k, :, 0] for k in range(3)) + np.asarray(layer.conv.bias)
    np.testing.assert_allclose(out, x + conv, rtol=1e-4, atol=1e-5)
    # What sits in the padding never reaches a real token.
    x2 = x.copy()
    x2[1, 3:] = 100.0
    np.testing.assert_allclose(np.asarray(layer(x2, padding_mask=mask))[1, :3], out[1, :3],
                               rtol=1e-5, atol=1e-5)


def test_local_layers_freeze_with_their_block():
    backbone = models.TransformerBackbone(30, max_sequence_length=6, num_layers=2, hidden_dim=8,
                                          num_heads=2, intermediate_dim=16,
                                          local_kernel_size=3)
    strategies.apply_strategy(backbone, "freeze_bottom", k=1)
    assert not backbone.local_layers[0].trainable and not backbone.transformer_layers[0].trainable
    assert backbone.local_layers[1].trainable and backbone.transformer_layers[1].trainable


def test_unigram_perplexity_matches_a_hand_count():
    train = np.array([[2, 5, 5, 6, 3, 0], [2, 5, 7, 3, 0, 0]], "int32")
    heldout = objectives.MLMDataset(np.array([[2, 5, 6, 7, 5, 3]], "int32"), 8, batch_size=4,
                                    dynamic=False, shuffle=False, seed=0, mask_rate=0.5)
    out = recipe.unigram_perplexity(train, heldout, vocabulary_size=8)
    counts = np.bincount([5, 5, 6, 5, 7], minlength=8) + 1.0  # specials 0, 2, 3 left out
    p = counts / counts.sum()
    _, y, w = heldout[0]
    y, w = np.asarray(y)[0], np.asarray(w)[0]
    expected = np.exp(-(np.log(p[y]) * w).sum() / w.sum())
    assert np.isclose(out["perplexity"], expected)
    assert np.isclose(out["top_token_share"], ((y == 5) * w).sum() / w.sum())
