"""ptft_keras: pre-training and fine-tuning of foundation models, in Keras 3.

<!-- chapter-map -->
**Chapter map**

| chapter | notebook | modules (`ptft_keras.`…) |
|---|---|---|
| 1 — foundations: what pre-training buys, seven families | `notebooks/01_foundations.ipynb` | objectives (word_vectors, mlm, all seven families), models, finetuning, experiments.label_budget |
| 2 — mathematics and algorithms, fine-tuning strategies | `notebooks/02_math_and_algorithms.ipynb` | scratch (NumPy only), finetuning (six strategies), optimizers |
| 3 — practice: pre-train, fine-tune, a sentiment project | `notebooks/03_practice.ipynb` | tokenizers, models, objectives.mlm, finetuning, evaluation, models.minilm |
| 4 — multi-task learning, cross-domain fine-tuning | `notebooks/04_multitask_and_domains.ipynb` | multitask, domain, layers, experiments.single_vs_multi |
| 5 — trends: scaling, distributed, CLIP, applications | `notebooks/05_trends.ipynb` | scaling, experiments.scaling_grid, distributed, models.clip, data.sensors, data.finance |
| A — tools and resources | `notebooks/A_tools_and_resources.ipynb` | config, data |
| B — every formula next to its code | `notebooks/B_formulas.ipynb` | scratch and the modules above |
<!-- /chapter-map -->

The shortest path, strings to a fine-tuned classifier (about five calls)::

    from ptft_keras import tokenizers, models, objectives, finetuning
    tok = tokenizers.WordPieceTokenizer.train(texts, vocabulary_size=4000)
    ids = tok.encode(texts, sequence_length=48)                  # int32 (N, 48), 0 = [PAD]
    backbone = models.TransformerBackbone(vocabulary_size=tok.vocabulary_size(),
                                          max_sequence_length=48)
    objectives.MaskedLMPretrainer(backbone).fit(
        objectives.MLMDataset(ids, tok.vocabulary_size(), batch_size=64), epochs=1)
    clf = models.build_classifier(backbone, num_classes=2)       # token ids in, logits out
    result = finetuning.finetune(clf, (ids, labels), validation=(val_ids, val_labels),
                                 strategy="lora", epochs=3)

Sub-packages load on first use, so ``ptft_keras.scratch`` (NumPy only) and ``ptft_keras.data``
never start TensorFlow. Touching any Keras part (``models``, ``objectives``, ``finetuning``,
...) imports all of them, which registers every serializable class: after
``from ptft_keras import models``, ``keras.saving.load_model`` reads any ``.keras`` file the
course saved.
"""

import importlib

__version__ = "0.1.0"

# NumPy/pandas only: importing these never imports TensorFlow.
_LIGHT = ("config", "data", "scratch")
# Keras-side: importing one imports all, so every registered class is known to load_model.
_KERAS = (
    "layers",
    "optimizers",
    "tokenizers",
    "models",
    "objectives",
    "finetuning",
    "evaluation",
    "multitask",
    "domain",
    "scaling",
    "experiments",
    "saving",
)
_TF_ONLY = ("distributed",)  # tf.distribute: TensorFlow backend only
__all__ = list(_LIGHT + _KERAS + _TF_ONLY)


def __getattr__(name):
    if name in _KERAS:
        for part in _KERAS:
            importlib.import_module(f"ptft_keras.{part}")
    if name in __all__:
        return importlib.import_module(f"ptft_keras.{name}")
    raise AttributeError(f"module 'ptft_keras' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
