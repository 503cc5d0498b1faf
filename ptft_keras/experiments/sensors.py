"""Few-label fault classification: masked-reconstruction pre-training vs training from scratch."""

import time

import keras
import numpy as np

from ptft_keras.finetuning import ModelSnapshot, compile_classifier, snapshot_values

from ptft_keras.data.sensors import CLASS_NAMES, MaskedSeriesBatches, make_sensor_data
from ptft_keras.models.sensor import (
    build_fault_classifier,
    build_masked_pretrainer,
    build_sensor_encoder,
    compile_pretrainer,
)


# --- experiment ----------------------------------------------------------------------------------
def pretrain_encoder(x_unlabeled, epochs=4, batch_size=64, seed=0, mask_rate=0.25, span=8,
                     learning_rate=2e-3, verbose=0, **encoder_kwargs):
    """Masked-reconstruction pre-training on unlabeled series: (encoder, history)."""
    keras.utils.set_random_seed(seed)
    encoder = build_sensor_encoder(channels=x_unlabeled.shape[-1], **encoder_kwargs)
    model = compile_pretrainer(build_masked_pretrainer(encoder), learning_rate)
    data = MaskedSeriesBatches(x_unlabeled, batch_size, mask_rate, span, seed)
    history = model.fit(data, epochs=epochs, verbose=verbose)
    return encoder, history


def sample_per_class(y, per_class, seed=0):
    """Indices of ``per_class`` rows of every class, seeded (a few-label training set)."""
    rng = np.random.default_rng(seed)
    picks = []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < per_class:
            raise ValueError(f"class {label} has {len(rows)} rows, fewer than {per_class}.")
        picks.append(rng.choice(rows, per_class, replace=False))
    return np.sort(np.concatenate(picks))


class ReusableFineTuner:
    """Fine-tunes one compiled classifier again and again from different starting weights.

    Every (arm, budget, seed) run of an experiment has the same architecture, so instead of
    compiling a new model per run (and paying TensorFlow's graph tracing, 1-2 s on a laptop
    CPU, as much as the training itself) the runs share one: ``run`` loads the starting encoder
    weights, a head initialised with the run's seed and the optimizer's initial state, then
    calls ``fit``. The result equals a freshly built model's, only faster.

    ``head_epochs`` > 0 first trains the head alone on the frozen encoder, then everything for
    ``epochs`` ("linear probe, then fine-tune", Kumar et al. 2022: a random head's first,
    large gradients otherwise flow into and disturb the pre-trained features).
    """

    def __init__(self, encoder, num_classes=len(CLASS_NAMES), epochs=60, learning_rate=1e-3,
                 head_epochs=0):
        self.template = encoder  # only its architecture is used: clones get their own weights
        self.epochs, self.head_epochs = int(epochs), int(head_epochs)
        self.num_classes = int(num_classes)
        self.model, self.model_start = self._compiled(True, learning_rate)
        if self.head_epochs:
            self.frozen, self.frozen_start = self._compiled(False, learning_rate)

    def _compiled(self, trainable_encoder, learning_rate):
        encoder = keras.models.clone_model(self.template)
        encoder.trainable = trainable_encoder
        model = compile_classifier(build_fault_classifier(encoder, self.num_classes),
                                   optimizer=keras.optimizers.Adam(learning_rate))
        return model, ModelSnapshot(model)

    def fresh_encoder_weights(self, seed):
        keras.utils.set_random_seed(seed)
        return keras.models.clone_model(self.template).get_weights()

    @staticmethod
    def _fit(model, snapshot, values, x, y, epochs):
        snapshot.restore(values)  # every variable: dropout seed state and Adam moments too
        model.fit(x, y, epochs=epochs, batch_size=len(x), verbose=0)
        return snapshot_values(model)

    def run(self, encoder_weights, x, y, seed=0):
        """Fit on (x, y), full batch, from ``encoder_weights`` and a head seeded by ``seed``.

        Same numbers as ``keras.utils.set_random_seed(seed)``, cloning the encoder, loading
        ``encoder_weights``, ``build_fault_classifier``, ``compile_classifier`` and ``fit``.
        """
        keras.utils.set_random_seed(seed)
        encoder = keras.models.clone_model(self.template)
        encoder.set_weights(encoder_weights)
        values = snapshot_values(build_fault_classifier(encoder, self.num_classes))
        if self.head_epochs:
            values = self._fit(self.frozen, self.frozen_start, values, x, y, self.head_epochs)
        self._fit(self.model, self.model_start, values, x, y, self.epochs)
        return self.model

    def accuracy(self, x, y):
        return float(np.mean(self.model.predict(x, batch_size=256, verbose=0).argmax(1) == y))


def few_label_comparison(n_unlabeled=2000, n_pool=800, n_test=800, label_budgets=(5, 10),
                         seeds=(0, 1, 2), pretrain_epochs=4, finetune_epochs=60, head_epochs=0,
                         finetune_learning_rate=1e-3, length=128, encoder_kwargs=None,
                         pretrain_kwargs=None):
    """Pre-trained vs. from-scratch encoder, fine-tuned on ``budget`` labels per class.

    Three independent draws of the generator: unlabeled series (their labels are discarded),
    a labelled pool to sample the few labels from, and a test set. Both arms get the same
    labelled rows, architecture, head initialisation, protocol, epochs and learning rate for
    each (budget, seed); only the encoder's starting weights differ (pre-trained, or freshly
    initialised with that seed). Returns (rows, info): rows are dicts with labels_per_class,
    seed, arm and test_accuracy; info holds the pre-training losses and the seconds spent.
    """
    encoder_kwargs = encoder_kwargs or {}
    start = time.perf_counter()
    x_unlab, _, _ = make_sensor_data(n_unlabeled, length, seed=1000)
    x_pool, y_pool, _ = make_sensor_data(n_pool, length, seed=2000)
    x_test, y_test, _ = make_sensor_data(n_test, length, seed=3000)
    pretrained, history = pretrain_encoder(x_unlab, epochs=pretrain_epochs,
                                           **(pretrain_kwargs or {}), **encoder_kwargs)
    pretrain_seconds = time.perf_counter() - start
    tuner = ReusableFineTuner(pretrained, len(CLASS_NAMES), finetune_epochs,
                              finetune_learning_rate, head_epochs)
    rows = []
    for budget in label_budgets:
        for seed in seeds:
            picked = sample_per_class(y_pool, budget, seed)
            starts = {"pretrained": pretrained.get_weights(),
                      "scratch": tuner.fresh_encoder_weights(seed)}
            for arm, weights in starts.items():
                tuner.run(weights, x_pool[picked], y_pool[picked], seed)
                rows.append({"labels_per_class": budget, "seed": seed, "arm": arm,
                             "test_accuracy": tuner.accuracy(x_test, y_test)})
    info = {"pretrain_loss": [float(v) for v in history.history["loss"]],
            "pretrain_seconds": pretrain_seconds,
            "total_seconds": time.perf_counter() - start}
    return rows, info
