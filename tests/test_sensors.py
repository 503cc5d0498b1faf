"""Sensor example: generator (determinism, balance, the physics each class claims), span masking,
masked-only reconstruction loss checked by hand, pre-training learns, fine-tuner reuse is exact,
save/load."""

import keras
import numpy as np
import pytest

from ptft_keras import finetuning
from ptft_keras.data import sensors as sensor_data
from ptft_keras.experiments import sensors as sensor_experiment
from ptft_keras.models import sensor as sensor_model


# --- generator -----------------------------------------------------------------------------------
def test_generator_is_deterministic_shaped_and_balanced():
    x, y, names = sensor_data.make_sensor_data(200, length=64, channels=3, seed=5)
    x2, y2, _ = sensor_data.make_sensor_data(200, length=64, channels=3, seed=5)
    x3, _, _ = sensor_data.make_sensor_data(200, length=64, channels=3, seed=6)
    assert x.shape == (200, 64, 3) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.allclose(x, x3)
    assert names == sensor_data.CLASS_NAMES
    assert np.bincount(y, minlength=4).tolist() == [50, 50, 50, 50]  # default fault_rate 0.75
    assert len(set(y[:20].tolist())) > 1  # shuffled, not sorted by class
    assert np.isfinite(x).all()


@pytest.mark.parametrize("rate, expected", [(0.0, [10, 0, 0, 0]), (0.3, [7, 1, 1, 1]),
                                            (1.0, [0, 4, 3, 3])])
def test_fault_rate_sets_the_share_of_faulty_records(rate, expected):
    _, y, _ = sensor_data.make_sensor_data(10, length=32, fault_rate=rate, seed=0)
    assert np.bincount(y, minlength=4).tolist() == expected


def band_energy(x, low, high):
    """Mean spectral power per record and channel between low and high cycles per window."""
    spectrum = np.abs(np.fft.rfft(x, axis=1)) ** 2
    return spectrum[:, low:high].sum(axis=1)  # (N, C)


def test_each_fault_shows_the_signature_its_docstring_promises():
    x, y, _ = sensor_data.make_sensor_data(800, seed=1)
    radial_rms = np.sqrt((x[:, :, :2] ** 2).mean(axis=(1, 2)))
    axial = x[:, :, 2:3]
    # Imbalance: a much larger 1x vibration on the radial channels.
    assert radial_rms[y == 1].mean() > 1.5 * radial_rms[y == 0].mean()
    # Misalignment: a strong 2x harmonic, boosted on the axial channel.
    axial_rms = np.sqrt((axial ** 2).mean(axis=(1, 2)))
    assert axial_rms[y == 2].mean() > 1.3 * axial_rms[y == 0].mean()
    assert axial_rms[y == 1].mean() < 1.3 * axial_rms[y == 0].mean()  # imbalance: radial only
    # Bearing fault: ringing at the 20-30 cycle resonance, far above the harmonics (<= 24).
    resonance = band_energy(x[:, :, :2], 25, 40).mean(axis=1)
    assert np.median(resonance[y == 3]) > 2 * np.median(resonance[y == 0])


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fault_rate"):
        sensor_data.make_sensor_data(10, fault_rate=1.5)
    with pytest.raises(ValueError, match="length >= 16"):
        sensor_data.make_sensor_data(10, length=4)


# --- masking -------------------------------------------------------------------------------------
def test_mask_series_masks_exact_spans_and_keeps_the_target():
    x, _, _ = sensor_data.make_sensor_data(64, length=128, seed=2)
    masked, target, weights = sensor_data.mask_series(x, mask_rate=0.25, span=8, seed=3)
    assert masked.shape == target.shape == x.shape and weights.shape == (64, 128)
    np.testing.assert_array_equal(target, x)  # the target is the untouched series
    # Rate: round(128 * 0.25 / 8) = 4 spans of 8 = 32 steps in every row.
    assert (weights.sum(axis=1) == 32).all()
    m = weights.astype(bool)
    assert (masked[m] == 0).all()  # every channel of a masked step is hidden
    np.testing.assert_array_equal(masked[~m], x[~m])  # the rest is unchanged
    # Masked steps come in contiguous runs whose lengths are multiples of the span.
    for row in weights:
        edges = np.diff(np.concatenate([[0], row, [0]]))
        runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        assert (runs % 8 == 0).all() and runs.sum() == 32
    # Seeded; different rows get different spans; spans reach both ends of the series.
    np.testing.assert_array_equal(sensor_data.mask_series(x, 0.25, 8, seed=3)[2], weights)
    assert len({tuple(r) for r in weights}) > 50
    many = sensor_data.mask_series(np.zeros((4000, 128, 1)), 0.25, 8, seed=0)[2]
    coverage = many.mean(axis=0)
    # Step 0 is masked only when the first of the 96 + 4 slots holds a span: p = 4 / 100.
    assert abs(coverage[0] - 0.04) < 0.012 and abs(coverage[-1] - 0.04) < 0.012
    assert 0.2 < coverage[40:88].mean() < 0.3  # the middle about at the mask rate
    assert abs(coverage.mean() - 0.25) < 1e-6


@pytest.mark.parametrize("rate, span, steps", [(0.15, 4, 20), (0.5, 16, 64), (0.01, 8, 8)])
def test_mask_rate_is_met_within_one_span(rate, span, steps):
    weights = sensor_data.mask_series(np.ones((5, 128, 2)), rate, span, seed=0)[2]
    assert (weights.sum(axis=1) == steps).all()
    assert abs(steps / 128 - rate) <= span / 128 / 2 + 0.04  # rounding to whole spans (min 1)


def test_mask_series_rejects_bad_input():
    with pytest.raises(ValueError, match="N, length, channels"):
        sensor_data.mask_series(np.zeros((4, 128)))
    with pytest.raises(ValueError, match="mask_rate"):
        sensor_data.mask_series(np.zeros((4, 128, 3)), mask_rate=0.0)


# --- models --------------------------------------------------------------------------------------
def tiny_encoder(seed=0):
    keras.utils.set_random_seed(seed)
    return sensor_model.build_sensor_encoder(channels=3, width=8, dilations=(1, 2))


def test_reconstruction_loss_counts_masked_steps_only_as_computed_by_hand():
    model = sensor_model.compile_pretrainer(sensor_model.build_masked_pretrainer(tiny_encoder()))
    x, _, _ = sensor_data.make_sensor_data(16, length=64, seed=4)
    masked, target, weights = sensor_data.mask_series(x, 0.25, 8, seed=5)
    prediction = model.predict(masked, verbose=0)
    squared = ((prediction - target) ** 2).mean(axis=-1)  # (N, L): mean over channels
    by_hand = (squared * weights).sum() / weights.sum()
    loss = model.evaluate(masked, target, sample_weight=weights, batch_size=16, verbose=0)
    assert loss == pytest.approx(by_hand, rel=1e-5)
    assert loss != pytest.approx(squared.mean(), rel=1e-3)  # not the all-steps mean
    # Changing the target where nothing is masked changes nothing.
    other = np.where(weights[:, :, None] > 0, target, 100.0).astype("float32")
    assert model.evaluate(masked, other, sample_weight=weights, batch_size=16,
                          verbose=0) == pytest.approx(loss, rel=1e-6)


def test_a_few_pretraining_epochs_reduce_held_out_reconstruction_loss():
    x_train, _, _ = sensor_data.make_sensor_data(256, length=64, seed=7)
    x_val, _, _ = sensor_data.make_sensor_data(64, length=64, seed=8)
    masked, target, weights = sensor_data.mask_series(x_val, 0.25, 8, seed=9)
    rows = weights.astype(bool)

    def best_linear_head_loss(encoder_):
        """Held-out masked MSE of the encoder's features with the best (least-squares) head:
        compares encoders, not heads."""
        features = encoder_.predict(masked, verbose=0)[rows]
        features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
        coef, *_ = np.linalg.lstsq(features, target[rows], rcond=None)
        return float(((features @ coef - target[rows]) ** 2).mean())

    untrained = sensor_model.compile_pretrainer(sensor_model.build_masked_pretrainer(tiny_encoder(0)))
    held_out_before = untrained.evaluate(masked, target, sample_weight=weights, verbose=0)
    features_before = best_linear_head_loss(tiny_encoder(0))
    encoder, history = sensor_experiment.pretrain_encoder(x_train, epochs=3, batch_size=32, seed=0, width=8,
                                          dilations=(1, 2))
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    held_out_after = history.model.evaluate(masked, target, sample_weight=weights, verbose=0)
    assert held_out_after < 0.85 * held_out_before, (held_out_before, held_out_after)
    # Not only the head learned: the encoder's features got better for filling gaps.
    features_after = best_linear_head_loss(encoder)
    assert features_after < 0.9 * features_before, (features_before, features_after)


def test_reused_fine_tuner_gives_exactly_what_a_fresh_model_gives():
    x, y, _ = sensor_data.make_sensor_data(24, length=64, seed=10)
    template = tiny_encoder(1)
    tuner = sensor_experiment.ReusableFineTuner(template, epochs=3)
    start = tuner.fresh_encoder_weights(3)
    tuner.run(start, x, y, seed=3)
    first = tuner.model.get_weights()
    tuner.run(tuner.fresh_encoder_weights(4), x, y, seed=4)  # a different run in between
    tuner.run(start, x, y, seed=3)
    keras.utils.set_random_seed(3)
    encoder = keras.models.clone_model(template)
    encoder.set_weights(start)
    fresh = finetuning.compile_classifier(sensor_model.build_fault_classifier(encoder),
                                         optimizer=keras.optimizers.Adam(1e-3))
    fresh.fit(x, y, epochs=3, batch_size=len(x), verbose=0)
    for a, b, c in zip(first, tuner.model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-6)
    assert not np.allclose(first[0], start[0])  # and it did train the encoder


def test_few_label_comparison_reports_both_arms_on_the_same_budgets():
    rows, info = sensor_experiment.few_label_comparison(n_unlabeled=64, n_pool=40, n_test=40, label_budgets=(2,),
                                        seeds=(0,), pretrain_epochs=1, finetune_epochs=2,
                                        length=32, encoder_kwargs={"width": 8,
                                                                   "dilations": (1,)})
    assert [(r["arm"], r["labels_per_class"]) for r in rows] == [("pretrained", 2),
                                                                  ("scratch", 2)]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    assert len(info["pretrain_loss"]) == 1 and info["total_seconds"] > 0


def test_sample_per_class_is_seeded_and_stratified():
    y = np.repeat(np.arange(4), 10)
    picked = sensor_experiment.sample_per_class(y, 3, seed=1)
    assert np.bincount(y[picked]).tolist() == [3, 3, 3, 3]
    np.testing.assert_array_equal(picked, sensor_experiment.sample_per_class(y, 3, seed=1))
    with pytest.raises(ValueError, match="fewer than 11"):
        sensor_experiment.sample_per_class(y, 11)


def test_pretrainer_and_classifier_save_and_load_with_identical_outputs(tmp_path):
    encoder = tiny_encoder(2)
    pretrainer = sensor_model.build_masked_pretrainer(encoder)
    classifier = sensor_model.build_fault_classifier(encoder)  # shares the encoder, as after pre-training
    x, _, _ = sensor_data.make_sensor_data(8, length=64, seed=11)
    for model in (pretrainer, classifier):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
