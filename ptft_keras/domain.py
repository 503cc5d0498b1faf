"""Cross-domain fine-tuning (chapter 4.2): measure the domain gap, then close it.

- ``cross_domain_matrix``: train on each source domain, test on every target domain
  (movie -> product -> tweet -> news), and the drop against in-domain training.
- ``continue_pretraining``: domain-adaptive continued MLM pre-training on unlabeled target text
  (Gururangan et al. 2020, "Don't Stop Pretraining"), reusing ``objectives.mlm``.
- ``build_dann``: domain-adversarial training (Ganin et al. 2016). A domain classifier sits
  behind a ``GradientReversal`` layer: it learns to tell the domains apart, while the reversed
  gradient pushes the shared features to make that impossible, i.e. domain-invariant. The label
  head trains on labelled source rows only; target rows (no labels) train the domain head only.
- ``DomainBalancedSampler``: every batch holds the same number of rows from every domain.

Heads are built with the Functional API; integer labels use *sparse* categorical cross-entropy.
"""

import math

import keras
import numpy as np
import pandas as pd

from ptft_keras import multitask
from ptft_keras.data.datasets import EpochDataset
from ptft_keras.data.loaders import DOMAINS
from ptft_keras.layers import GradientReversal
from ptft_keras.models.classifier import backbone_inputs, pooled_features


def dann_lambda(progress, gamma=10.0, max_lambda=1.0):
    """Ganin et al.'s schedule lambda_p = max_lambda * (2 / (1 + exp(-gamma p)) - 1), p in [0, 1].

    Starts at 0 (the domain head's early, random gradients do not disturb the features) and
    rises smoothly to max_lambda.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return float(max_lambda * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0))


@keras.saving.register_keras_serializable(package="ptft_keras")
class DANNSchedule(keras.callbacks.Callback):
    """Sets the ``GradientReversal`` layer's lambda before every batch with ``dann_lambda``.

    layer: the layer or its name in the model. total_steps: the run's number of batches
    (default: epochs x steps per epoch from ``fit``). Logs ``grl_lambda`` every epoch.
    """

    def __init__(self, layer="gradient_reversal", total_steps=None, gamma=10.0, max_lambda=1.0):
        super().__init__()
        self.layer = layer
        self.requested_steps = total_steps
        self.total_steps = total_steps
        self.gamma = float(gamma)
        self.max_lambda = float(max_lambda)
        self.step = 0

    def _layer(self):
        if isinstance(self.layer, GradientReversal):
            return self.layer
        return self.model.get_layer(self.layer)

    def on_train_begin(self, logs=None):
        self.step = 0
        self.total_steps = self.requested_steps  # each fit recomputes its own length
        if self.total_steps is None:
            steps, epochs = self.params.get("steps"), self.params.get("epochs")
            if not steps:
                raise ValueError("DANNSchedule needs total_steps: fit did not report its steps.")
            self.total_steps = int(steps) * int(epochs)

    def on_train_batch_begin(self, batch, logs=None):
        self._layer().lambda_ = dann_lambda(
            self.step / max(self.total_steps, 1), self.gamma, self.max_lambda
        )
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["grl_lambda"] = self._layer().lambda_

    def get_config(self):
        return {
            "layer": self.layer if isinstance(self.layer, str) else self.layer.name,
            "total_steps": self.requested_steps, "gamma": self.gamma,
            "max_lambda": self.max_lambda,
        }


# --- DANN model and data -------------------------------------------------------------------------
def dann_tasks(num_classes, num_domains):
    """The two outputs of a DANN model as ``multitask`` tasks: "label" and "domain"."""
    return {
        "label": {"type": "classification", "num_classes": int(num_classes)},
        "domain": {"type": "classification", "num_classes": int(num_domains)},
    }


def build_dann(backbone, num_classes, num_domains=2, lambda_=1.0, pooling="mean", dropout=0.1,
               domain_units=64, name="dann"):
    """Shared backbone -> pooled features (B, H) -> {"label": (B, C), "domain": (B, D)} logits.

    The domain head (Dense(domain_units, relu) -> Dense(D)) sits behind a ``GradientReversal``
    layer named "gradient_reversal": it minimises the domain loss, the backbone maximises it
    (scaled by lambda_). Works with our backbones and keras-hub's (dict inputs and outputs; the
    pooled features are a masked mean of ``sequence_output``, so keras-hub's unused pooler gets
    no gradient and Keras says so in a warning).
    """
    inputs = backbone_inputs(backbone)
    features = pooled_features(backbone, inputs, pooling)
    label = keras.layers.Dropout(dropout, name="label_dropout")(features)
    label = keras.layers.Dense(num_classes, dtype="float32", name="label")(label)
    reversed_ = GradientReversal(lambda_, name="gradient_reversal")(features)
    domain = keras.layers.Dense(domain_units, activation="relu", name="domain_hidden")(reversed_)
    domain = keras.layers.Dense(num_domains, dtype="float32", name="domain")(domain)
    return keras.Model(inputs, {"label": label, "domain": domain}, name=name)


def compile_dann(model, learning_rate=1e-3, domain_weight=1.0, **kwargs):
    """Masked sparse cross-entropy on both heads (``multitask.compile_multitask``)."""
    tasks = dann_tasks(model.output["label"].shape[-1], model.output["domain"].shape[-1])
    return multitask.compile_multitask(
        model, tasks, loss_weights={"label": 1.0, "domain": domain_weight},
        learning_rate=learning_rate, **kwargs,
    )


def domain_arrays(x, domain_id, labels=None):
    """(x, y, sample_weight) for one domain's rows, for a DANN model or ``DomainBalancedSampler``.

    labels None (unlabeled target text): the task label is masked (weight 0, placeholder 0);
    the domain label ``domain_id`` is known for every row, so the domain head trains on all.
    """
    x = x if isinstance(x, dict) else {"token_ids": np.asarray(x)}
    n = len(next(iter(x.values())))
    known = labels is not None
    y = {
        "label": np.asarray(labels, "int32") if known else np.zeros(n, "int32"),
        "domain": np.full(n, int(domain_id), "int32"),
    }
    weights = {"label": np.full(n, float(known), "float32"), "domain": np.ones(n, "float32")}
    if len(y["label"]) != n:
        raise ValueError(f"{n} inputs but {len(y['label'])} labels.")
    return x, y, weights


def concat_arrays(*parts):
    """Row-wise concatenation of several (x, y, sample_weight) triples."""
    return tuple(
        {k: np.concatenate([np.asarray(part[i][k]) for part in parts]) for k in parts[0][i]}
        for i in range(3)
    )


class DomainBalancedSampler(EpochDataset):
    """Batches with batch_size / K rows from each of the K domains, whatever their sizes.

    parts: {domain: (x, y, sample_weight)} (e.g. from ``domain_arrays``). A small domain is
    cycled through (reshuffled each pass) more often than a large one. ``steps_per_epoch``
    defaults to enough batches to show the largest domain once. Each epoch's rows are fixed by
    (seed, epoch). batch_size must be a multiple of K.
    """

    def __init__(self, parts, batch_size=32, steps_per_epoch=None, seed=0, **kwargs):
        self.names = list(parts)
        if not self.names:
            raise ValueError("DomainBalancedSampler needs at least one domain.")
        if batch_size % len(self.names):
            raise ValueError(
                f"batch_size={batch_size} is not a multiple of the {len(self.names)} domains: "
                f"balanced batches need the same number of rows from each."
            )
        self.parts = parts
        self.per_domain = batch_size // len(self.names)
        self.sizes = {d: len(next(iter(parts[d][0].values()))) for d in self.names}
        self.steps = int(steps_per_epoch or math.ceil(max(self.sizes.values()) / self.per_domain))
        super().__init__(batch_size=batch_size, seed=seed, shuffle=False, **kwargs)

    def make_epoch(self, rng):
        count = self.steps * self.per_domain
        self.rows = {
            d: multitask.index_stream(rng, self.sizes[d], count).reshape(self.steps, -1)
            for d in self.names
        }
        # Batch b: per_domain rows of the first domain, then of the second, ...
        return tuple(
            {key: np.stack([np.asarray(self.parts[d][i][key])[self.rows[d]] for d in self.names],
                           axis=1).reshape(count * len(self.names), *np.shape(value)[1:])
             for key, value in self.parts[self.names[0]][i].items()}
            for i in range(3)
        )


# --- cross-domain evaluation ---------------------------------------------------------------------
def cross_domain_matrix(train_fn, eval_fn, domains=DOMAINS):
    """Accuracy of a model trained on each source domain, tested on each target domain.

    train_fn(source) -> model; eval_fn(model, target) -> accuracy (float).
    Returns (accuracy, drop): two DataFrames indexed by source (rows) x target (columns).
    drop[s, t] = accuracy[t, t] - accuracy[s, t]: how much worse than a model trained in the
    target domain itself (the "transfer loss"); the diagonal is 0.
    """
    domains = list(domains)
    accuracy = pd.DataFrame(index=pd.Index(domains, name="source"),
                            columns=pd.Index(domains, name="target"), dtype=float)
    for source in domains:
        model = train_fn(source)
        for target in domains:
            accuracy.loc[source, target] = float(eval_fn(model, target))
    in_domain = pd.Series(np.diag(accuracy.to_numpy()), index=accuracy.columns)
    drop = in_domain - accuracy  # broadcasts the target's in-domain accuracy down each column
    return accuracy, drop


# --- domain-adaptive continued pre-training ------------------------------------------------------
class _StopAfter(keras.callbacks.Callback):
    """Ends ``fit`` after exactly ``steps`` batches (Keras checks ``stop_training`` per batch)."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.seen = int(steps), 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.steps:
            self.model.stop_training = True


def continue_pretraining(backbone, target_texts, encoder, steps=200, batch_size=16,
                         learning_rate=5e-4, pretrainer=None, seed=0, verbose=0,
                         run_eagerly=False, **mask_kwargs):
    """Continue MLM pre-training of ``backbone`` on unlabeled target-domain text, in place.

    encoder: texts -> token ids (N, S) int array (e.g. ``lambda t: tokenizers.encode(t, tok,
    128)``), or a dict with "token_ids" (a keras-hub preprocessor's output). keras-hub BERT
    backbones also get ``segment_ids`` (zeros) and ``padding_mask`` (id != 0).
    pretrainer: an existing ``MaskedLMPretrainer`` on this backbone (keeps its trained MLM
    head); default: a new one, whose head starts random. mask_kwargs go to ``mask_tokens``
    (another vocabulary's ``mask_token_id``, ``special_ids``, ``random_start``). For MiniLM:

        P = ptft_keras.pretrained
        continue_pretraining(backbone, texts, preprocessor, mask_token_id=P.MASK_ID,
                             special_ids=(P.PAD_ID, P.UNK_ID, P.CLS_ID, P.SEP_ID, P.MASK_ID),
                             random_start=P.FIRST_REGULAR_ID)

    Runs exactly ``steps`` optimizer steps with dynamic masking (a fresh AdamW each call).
    ``run_eagerly=True`` skips tracing: quicker for a few steps of a tiny model.
    Returns (pretrainer, History).
    """
    from ptft_keras.objectives.mlm import MaskedLMPretrainer, MLMDataset, compile_mlm

    encoded = encoder(list(target_texts))
    token_ids = np.asarray(encoded["token_ids"] if isinstance(encoded, dict) else encoded)
    extra_inputs = {}
    if "segment_ids" in backbone.input:
        extra_inputs["segment_ids"] = np.zeros_like
    if "padding_mask" in backbone.input:
        # The corrupted ids still have 0 exactly at padding ([MASK] is never id 0).
        extra_inputs["padding_mask"] = lambda ids: (ids != 0).astype("int32")
    dataset = MLMDataset(
        token_ids, vocabulary_size=backbone.vocabulary_size, batch_size=batch_size,
        dynamic=True, seed=seed, extra_inputs=extra_inputs, **mask_kwargs,
    )
    if pretrainer is None:
        pretrainer = MaskedLMPretrainer(backbone, name="domain_mlm")
    elif pretrainer.backbone is not backbone:
        raise ValueError("pretrainer wraps another backbone: pass the pretrainer of this backbone.")
    compile_mlm(pretrainer, learning_rate=learning_rate,
                jit_compile=False if run_eagerly else "auto")
    pretrainer.run_eagerly = run_eagerly
    keras.utils.set_random_seed(seed)
    history = pretrainer.fit(
        dataset, epochs=math.ceil(steps / len(dataset)), callbacks=[_StopAfter(steps)],
        verbose=verbose,
    )
    return pretrainer, history
