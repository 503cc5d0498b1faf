"""A classifier that takes raw strings: WordPiece + [CLS]/[SEP] packing + a token-id classifier.

``build_classifier`` makes a model of token ids; ``TextClassifier`` puts the tokenizer in front of
it so the model reads text and the saved ``.keras`` file carries its own vocabulary::

    text_clf = models.TextClassifier(tokenizer=tok, classifier=clf, sequence_length=48)
    text_clf.predict(["great film", "awful"])             # logits (2, num_classes)
    text_clf.save("clf.keras")
    keras.saving.load_model("clf.keras")                  # after `from ptft_keras import models`

Built the keras-hub way, from keras-hub parts: a ``keras_hub.models.TextClassifier`` task whose
``preprocessor`` (a ``keras_hub.models.Preprocessor``: keras-hub's ``WordPieceTokenizer`` and
``StartEndPacker``) runs inside the ``tf.data`` pipeline of ``predict`` / ``fit`` /
``evaluate``, on the CPU, and whose network is the token-id classifier. The ids are those of
``tokenizers.encode`` (same vocabulary, same [CLS]=2 ... [SEP]=3 [PAD]=0 packing), so the text
model and the id model give the same logits. Like every keras-hub task, calling the model
directly takes token ids: ``text_clf(text_clf.preprocessor(texts))``.
"""

import keras
import keras_hub

from ptft_keras import _compat
from ptft_keras.tokenizers import (
    CLS,
    PAD,
    SEP,
    WordPieceTokenizer,
    _check_sequence_length,
    check_vocab,
)


@keras.saving.register_keras_serializable(package="ptft_keras")
class WordPiecePreprocessor(keras_hub.models.Preprocessor):
    """Strings (B,) -> ``{"token_ids": int32 (B, sequence_length)}``, packed like ``encode``.

    tokenizer: a keras-hub ``WordPieceTokenizer`` (its vocabulary is saved as an asset of the
    ``.keras`` file). Labels and sample weights, when given, pass through unchanged.
    """

    def __init__(self, tokenizer, sequence_length=128, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = _check_sequence_length(sequence_length)
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=self.sequence_length, start_value=CLS, end_value=SEP,
            pad_value=PAD, name="packer",
        )

    def call(self, x, y=None, sample_weight=None):
        token_ids = self.packer(self.tokenizer(x))
        return keras.utils.pack_x_y_sample_weight({"token_ids": token_ids}, y, sample_weight)

    def get_config(self):
        config = super().get_config()  # name, dtype, tokenizer, config_file
        config["sequence_length"] = self.sequence_length
        return config


def _keras_tokenizer(tokenizer):
    if isinstance(tokenizer, WordPieceTokenizer):
        return tokenizer.keras_tokenizer()
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        return tokenizer
    if isinstance(tokenizer, (list, tuple)):
        return WordPieceTokenizer(tokenizer).keras_tokenizer()
    raise TypeError(
        f"tokenizer must be a ptft_keras.tokenizers.WordPieceTokenizer (or its keras_tokenizer(), "
        f"or a vocabulary list), got {type(tokenizer).__name__}."
    )


def _max_sequence_length(classifier):
    for layer in classifier.layers:
        if getattr(layer, "max_sequence_length", None):
            return layer.max_sequence_length
    return None


@keras.saving.register_keras_serializable(package="ptft_keras")
class TextClassifier(keras_hub.models.TextClassifier):
    """Raw strings in, logits (B, num_classes) out; saves and reloads as one ``.keras`` file.

    tokenizer: a ``tokenizers.WordPieceTokenizer`` (or its ``keras_tokenizer()``).
    classifier: a token-id classifier, e.g. ``models.build_classifier(backbone, num_classes)``
    (input ``{"token_ids"}``, output logits). sequence_length: the packed length (default: the
    backbone's ``max_sequence_length``); use the one the classifier was fine-tuned with.
    preprocessor: instead of tokenizer + sequence_length, a ``WordPiecePreprocessor``.
    compile=True: compiled like ``finetuning.compile_classifier`` (AdamW 1e-3, weight decay 0.01,
    cross-entropy on logits, accuracy), so ``fit(texts, labels)`` works; ``compile(...)``
    takes overrides.
    """

    def __init__(self, tokenizer=None, classifier=None, sequence_length=None, preprocessor=None,
                 compile=True, **kwargs):
        if classifier is None:
            raise ValueError("TextClassifier needs classifier=models.build_classifier(...).")
        inputs = getattr(classifier, "input", None)
        if not isinstance(inputs, dict) or sorted(inputs) != ["token_ids"]:
            shown = sorted(inputs) if isinstance(inputs, dict) else inputs
            raise ValueError(
                f"classifier must take {{'token_ids'}} only (models.build_classifier on a "
                f"TransformerBackbone or LSTMBackbone); it takes {shown}."
            )
        if preprocessor is None:
            if tokenizer is None:
                raise ValueError("TextClassifier needs tokenizer=... (a WordPieceTokenizer).")
            keras_tokenizer = _keras_tokenizer(tokenizer)
            check_vocab(keras_tokenizer.get_vocabulary())
            longest = _max_sequence_length(classifier)
            if sequence_length is None:
                sequence_length = longest
                if sequence_length is None:
                    raise ValueError("Pass sequence_length=... (the length the classifier was "
                                     "trained on).")
            if longest is not None and sequence_length > longest:
                raise ValueError(
                    f"sequence_length={sequence_length} is longer than the backbone's "
                    f"max_sequence_length={longest}: pass sequence_length={longest} or less.")
            preprocessor = WordPiecePreprocessor(keras_tokenizer, sequence_length,
                                                 name="preprocessor")
        elif tokenizer is not None or sequence_length is not None:
            raise ValueError("Pass either preprocessor=... or tokenizer= and sequence_length=.")
        elif not isinstance(preprocessor, WordPiecePreprocessor):
            raise ValueError(
                f"preprocessor is a {type(preprocessor).__name__}, a preprocessor of another model "
                f"family: it packs other inputs and special-token ids than the course's backbones "
                f"read ({{'token_ids'}} with [CLS]=2, [SEP]=3, [PAD]=0). Pass the tokenizer the "
                f"backbone was trained with: TextClassifier(tokenizer=tok, classifier=clf).")
        # The vocabulary is known here except while loading (assets come after construction).
        vocabulary = preprocessor.tokenizer.vocabulary
        for layer in classifier.layers:
            rows = getattr(layer, "vocabulary_size", None)
            if vocabulary is not None and isinstance(rows, int) and len(vocabulary) > rows:
                raise ValueError(
                    f"The tokenizer has {len(vocabulary)} tokens but the backbone's embedding "
                    f"has {rows} rows: the tokenizer and the model do not match. Use the "
                    f"tokenizer the backbone was built for."
                )
        super().__init__(compile=False, **kwargs)
        self.preprocessor = preprocessor
        self.classifier = classifier
        if compile:
            self.compile()

    @property
    def sequence_length(self):
        return self.preprocessor.sequence_length

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def compile(self, optimizer="auto", loss="auto", metrics="auto", learning_rate=1e-3,
                weight_decay=0.01, **kwargs):
        """``keras.Model.compile`` with the course's classification defaults for "auto"."""
        def auto(value):
            return isinstance(value, str) and value == "auto"

        if auto(optimizer):
            optimizer = keras.optimizers.AdamW(learning_rate=learning_rate,
                                               weight_decay=weight_decay)
        if auto(loss):
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if auto(metrics):
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        keras.Model.compile(self, optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def get_compile_config(self):
        return _compat.compile_config_with_state(self, super().get_compile_config())

    def compile_from_config(self, config):
        _compat.restore_compile(self, config)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "preprocessor": keras.layers.serialize(self.preprocessor),
            "classifier": keras.layers.serialize(self.classifier),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("preprocessor", "classifier"):
            if isinstance(config.get(key), dict):
                config[key] = keras.layers.deserialize(config[key])
        return cls(**config)
