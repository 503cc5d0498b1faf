"""Multimodal pre-training (chapter 5.1): a small CLIP-style image-text contrastive model.

Data: scikit-learn's bundled 8x8 handwritten digits (``load_digits``, 1,797 images, no download),
each paired with a generated caption such as "a handwritten digit seven" or "the number 7
written by hand". Captions use both the word and the numeral, so the text encoder has to learn
that "seven" and "7" mean the same thing, from co-occurrence with images alone.

Model (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"): an image encoder and a text encoder map into one shared, L2-normalised space.
Training pulls each image towards its own caption and away from the other captions in the batch
(symmetric InfoNCE, ``clip_loss``) with a learnable temperature. No class label is used.

Evaluation: ``zero_shot_classify`` turns class names into prompts ("a photo of the digit 7"),
averages each class's prompt embeddings (prompt ensembling) and assigns each image to the most
similar class. Zero-shot prompts come from templates *held out* of training, so the score is not
just caption look-up. ``linear_probe`` fits a supervised logistic regression on frozen features
for comparison.

False negatives: with 10 classes, a batch of 64 holds about six images of every digit, and plain
InfoNCE treats the captions of the other same-digit images as negatives. The loss therefore
cannot reach zero (its floor is about log(number of same-class pairs)) and it pushes apart
embeddings that should be close. CLIP ignores this (web captions rarely repeat exactly); here
``same_class_targets=True`` optionally spreads each row's target uniformly over the same-class
pairs, which needs the class labels and so is no longer label-free. Plain CLIP is the default.
"""

import copy
import math
import re

import keras
import numpy as np
from keras import ops

from ptft_keras.data.datasets import EpochDataset
from ptft_keras.layers import MaskedMeanPooling

IMAGE_SHAPE = (8, 8, 1)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# {w}: the digit as a word, {d}: as a numeral. Used to make training captions.
CAPTION_TEMPLATES = (
    "a handwritten digit {w}",
    "the number {d} written by hand",
    "an image of a {w}",
    "a scanned {d}",
    "a small picture of the number {w}",
    "the digit {d}",
    "a {w} written with a pen",
    "a blurry handwritten {d}",
)
# Held out of training: new word orders and pairings (same vocabulary, apart from "photo", which
# only the zero-shot prompts use and the tokenizer therefore maps to [UNK]).
ZERO_SHOT_TEMPLATES = (
    "a photo of the digit {w}",
    "a picture of the number {d}",
    "an image of the digit {d}",
    "a handwritten {w}",
)
PAD, UNK = "[PAD]", "[UNK]"


# --- data ----------------------------------------------------------------------------------------
def load_digit_images():
    """The 1,797 sklearn digits as float32 images (N, 8, 8, 1) in [0, 1] and int labels (N,).

    The set has no duplicate images (checked: 1,797 unique rows), so any split is leak-free.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    return images, digits.target.astype("int32")


def digit_split(test_size=0.25, seed=0):
    """Stratified, seeded train/test split: ((x_train, y_train), (x_test, y_test))."""
    from sklearn.model_selection import train_test_split

    images, labels = load_digit_images()
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    return (x_tr, y_tr), (x_te, y_te)


def fill_template(template, digit):
    return template.format(w=DIGIT_WORDS[int(digit)], d=str(int(digit)))


def digit_captions(labels, seed=0, templates=CAPTION_TEMPLATES):
    """One caption per label, each from a template drawn at random (seeded): list of str."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError("digit_captions expects a 1-D array of digit labels in 0..9.")
    choice = np.random.default_rng(seed).integers(0, len(templates), size=len(labels))
    return [fill_template(templates[c], y) for c, y in zip(choice, labels)]


def digit_prompts(templates=ZERO_SHOT_TEMPLATES):
    """Zero-shot prompts: a list of 10 lists, class k -> one prompt per template."""
    return [[fill_template(t, k) for t in templates] for k in range(10)]


class CaptionTokenizer:
    """Word-level tokenizer: lower-case, split on non-alphanumerics, pad/cut to ``length``.

    Ids: 0 = [PAD], 1 = [UNK], then the vocabulary in sorted order (deterministic).
    ``__call__(texts) -> int32 (N, length)``. Pure NumPy: it runs on the data side, not in the
    model, so the saved model takes token ids.
    """

    def __init__(self, vocabulary, length=8):
        words = [w for w in vocabulary if w not in (PAD, UNK)]
        self.vocabulary = [PAD, UNK] + sorted(set(words))
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        self.length = int(length)

    @classmethod
    def from_templates(cls, templates=CAPTION_TEMPLATES, length=8):
        """Vocabulary of every word the templates can produce for the 10 digits."""
        words = {w for t in templates for k in range(10) for w in cls.split(fill_template(t, k))}
        return cls(words, length)

    @staticmethod
    def split(text):
        return re.findall(r"[a-z0-9]+", text.lower())

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def __call__(self, texts):
        if isinstance(texts, str):
            raise ValueError("CaptionTokenizer takes a list of texts, not one string: wrap it.")
        ids = np.zeros((len(texts), self.length), dtype="int32")
        for row, text in enumerate(texts):
            tokens = [self.index.get(w, 1) for w in self.split(text)][: self.length]
            ids[row, : len(tokens)] = tokens
        return ids


class CaptionedDigits(EpochDataset):
    """Batches ``{"images", "token_ids"}, labels`` for ``fit``, new captions every epoch.

    Redrawing the template each epoch is data augmentation: an image is seen with many
    phrasings of its digit. Epoch e with seed s always draws the same captions and order.
    """

    shuffle_after = False  # the order is drawn first, then a caption for each ordered row

    def __init__(self, images, labels, tokenizer, batch_size=64, seed=0,
                 templates=CAPTION_TEMPLATES, **kwargs):
        self.images, self.labels = np.asarray(images, "float32"), np.asarray(labels, "int32")
        check_pairs(self.images, self.labels)
        self.tokenizer, self.templates = tokenizer, templates
        # Drop the ragged last batch: a batch of 3 gives an easy 3-way contrastive task.
        super().__init__(batch_size=batch_size, seed=seed, drop_remainder=True, **kwargs)

    def make_epoch(self, rng):
        # The templates come from a generator in the same start state as the one the order is
        # drawn from (as they always did), so the batches of each (seed, epoch) stay the same.
        templates_rng = copy.deepcopy(rng)
        self.order = self.row_order(rng, len(self.images))
        captions = digit_captions(self.labels[self.order], templates_rng, self.templates)
        self.token_ids = self.tokenizer(captions)
        return ({"images": self.images[self.order], "token_ids": self.token_ids},
                self.labels[self.order])


def check_pairs(images, other):
    """Clear errors for the two mistakes people make: wrong image shape, unequal counts."""
    shape = tuple(images.shape[1:])
    if shape != IMAGE_SHAPE:
        hint = " Add the channel axis: images[..., None]." if shape == IMAGE_SHAPE[:2] else ""
        raise ValueError(f"images must have shape (N, 8, 8, 1), got {tuple(images.shape)}.{hint}")
    n_images, n_other = images.shape[0], other.shape[0]  # None while tracing: not checkable
    if n_images is not None and n_other is not None and n_images != n_other:
        raise ValueError(
            f"{n_images} images but {n_other} captions/labels: every image needs exactly one."
        )


# --- loss ----------------------------------------------------------------------------------------
def clip_loss(image_embeddings, text_embeddings, temperature, labels=None):
    """Symmetric InfoNCE: mean of the image->text and text->image cross-entropies.

    image_embeddings, text_embeddings: (B, D), L2-normalised, row i of one matches row i of the
    other. logits = image @ text.T / temperature, (B, B). Targets: the diagonal (plain CLIP), or,
    with ``labels`` (B,) given, uniform over all pairs of the same class (false-negative-aware).
    Returns a scalar.
    """
    b_img, b_txt = image_embeddings.shape[0], text_embeddings.shape[0]
    if b_img is not None and b_txt is not None and b_img != b_txt:
        raise ValueError(
            f"clip_loss needs one caption per image: got {b_img} image and {b_txt} text "
            f"embeddings."
        )
    logits = ops.matmul(image_embeddings, ops.transpose(text_embeddings)) / temperature
    batch = ops.shape(logits)[0]
    if labels is None:
        targets = ops.eye(batch, dtype=logits.dtype)
    else:
        labels = ops.reshape(labels, (-1,))
        same = ops.cast(ops.equal(labels[:, None], labels[None, :]), logits.dtype)
        targets = same / ops.sum(same, axis=1, keepdims=True)  # symmetric, so also valid for .T
    image_to_text = keras.losses.categorical_crossentropy(targets, logits, from_logits=True)
    text_to_image = keras.losses.categorical_crossentropy(
        ops.transpose(targets), ops.transpose(logits), from_logits=True
    )
    return (ops.mean(image_to_text) + ops.mean(text_to_image)) / 2.0


# --- model ---------------------------------------------------------------------------------------
def build_image_encoder(embed_dim=32, width=64, name="image_encoder"):
    """Small conv net: (B, 8, 8, 1) -> L2-normalised (B, embed_dim)."""
    images = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Conv2D(width // 2, 3, padding="same", activation="relu")(images)
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)  # 4x4
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2 * width, activation="relu")(x)
    x = keras.layers.Dense(embed_dim, name="image_projection")(x)
    return keras.Model(images, keras.layers.UnitNormalization()(x), name=name)


def build_text_encoder(vocabulary_size, embed_dim=32, width=64, name="text_encoder"):
    """Bag of words: token ids (B, S) -> embedding -> masked mean -> MLP -> L2-normalised (B, D).

    Word order is ignored; for these captions only which digit word appears matters.
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, width)(token_ids)
    x = MaskedMeanPooling(name="mean_pool")(x, ops.not_equal(token_ids, 0))
    x = keras.layers.Dense(2 * width, activation="relu")(x)
    x = keras.layers.Dense(embed_dim, name="text_projection")(x)
    return keras.Model(token_ids, keras.layers.UnitNormalization()(x), name=name)


@keras.saving.register_keras_serializable(package="ptft_keras")
class DigitCLIP(keras.Model):
    """Image encoder + text encoder + learnable temperature, trained with ``clip_loss``.

    inputs: {"images": (B, 8, 8, 1) float, "token_ids": (B, S) int}.
    outputs: {"image_embeddings": (B, D), "text_embeddings": (B, D)}, both unit length.
    The temperature is stored as log(1 / T) (CLIP's "logit scale": positive, well-scaled
    gradients), starts at T = 0.07 and is clipped to T >= 0.01 (scale <= 100) as in CLIP, so
    the logits cannot blow up. ``fit(dataset)``: y (class labels) is used only when
    ``same_class_targets=True``; plain CLIP ignores it.
    """

    def __init__(self, vocabulary_size, embed_dim=32, width=64, initial_temperature=0.07,
                 same_class_targets=False, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.embed_dim, self.width = vocabulary_size, embed_dim, width
        self.initial_temperature = float(initial_temperature)
        self.same_class_targets = bool(same_class_targets)
        self.image_encoder = build_image_encoder(embed_dim, width)
        self.text_encoder = build_text_encoder(vocabulary_size, embed_dim, width)
        self.log_logit_scale = self.add_weight(
            shape=(), name="log_logit_scale",
            initializer=keras.initializers.Constant(math.log(1.0 / self.initial_temperature)),
        )

    @property
    def temperature(self):
        return ops.exp(-ops.clip(self.log_logit_scale, 0.0, math.log(100.0)))

    def call(self, inputs, training=False):
        images, token_ids = inputs["images"], inputs["token_ids"]
        check_pairs(images, token_ids)
        return {
            "image_embeddings": self.image_encoder(images, training=training),
            "text_embeddings": self.text_encoder(token_ids, training=training),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        if self.same_class_targets and y is None:
            raise ValueError("same_class_targets=True needs the class labels as y in fit.")
        labels = y if self.same_class_targets else None
        loss = clip_loss(
            y_pred["image_embeddings"], y_pred["text_embeddings"], self.temperature, labels
        )
        return loss + ops.sum(self.losses) if self.losses else loss

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size, embed_dim=self.embed_dim, width=self.width,
            initial_temperature=self.initial_temperature,
            same_class_targets=self.same_class_targets,
        )
        return config


def build_clip(vocabulary_size, embed_dim=32, width=64, initial_temperature=0.07,
               same_class_targets=False, learning_rate=3e-3, seed=None):
    """A compiled ``DigitCLIP`` (Adam), built so it can be saved before training."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = DigitCLIP(vocabulary_size, embed_dim, width, initial_temperature, same_class_targets)
    model({"images": np.zeros((2,) + IMAGE_SHAPE, "float32"),
           "token_ids": np.ones((2, 2), "int32")})
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def train_clip(images, labels, epochs=20, batch_size=64, seed=0, same_class_targets=False,
               tokenizer=None, verbose=0, **model_kwargs):
    """Build and fit a ``DigitCLIP`` on images + generated captions: (model, tokenizer, history).

    ``labels`` choose the captions' digits (and the soft targets if ``same_class_targets``).
    """
    tokenizer = tokenizer or CaptionTokenizer.from_templates()
    model = build_clip(tokenizer.vocabulary_size, same_class_targets=same_class_targets,
                       seed=seed, **model_kwargs)
    data = CaptionedDigits(images, labels, tokenizer, batch_size=batch_size, seed=seed)
    history = model.fit(data, epochs=epochs, verbose=verbose)
    return model, tokenizer, history


# --- evaluation ----------------------------------------------------------------------------------
def embed_images(model, images, batch_size=256):
    images = np.asarray(images, "float32")
    check_pairs(images, images)
    return model.image_encoder.predict(images, batch_size=batch_size, verbose=0)


def class_embeddings(model, tokenizer, class_prompts):
    """Prompt ensembling: mean of each class's unit prompt embeddings, renormalised: (K, D)."""
    if not class_prompts or any(isinstance(p, str) or not p for p in class_prompts):
        raise ValueError(
            "class_prompts must be a list with one non-empty list of prompts per class."
        )
    means = []
    for prompts in class_prompts:
        emb = model.text_encoder.predict(tokenizer(prompts), verbose=0)
        means.append(emb.mean(axis=0))
    means = np.stack(means)
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def zero_shot_classify(model, tokenizer, images, class_prompts=None):
    """Predicted class (N,) = argmax over classes of cos(image, class embedding); no labels used.

    class_prompts: one list of prompts per class (default: ``digit_prompts()``, the held-out
    templates).
    """
    class_prompts = digit_prompts() if class_prompts is None else class_prompts
    scores = embed_images(model, images) @ class_embeddings(model, tokenizer, class_prompts).T
    return scores.argmax(axis=1)


def linear_probe(train_features, train_labels, test_features, test_labels, C=1.0, seed=0):
    """Supervised logistic regression on frozen features; returns test accuracy.

    Features are flattened, so raw images (N, 8, 8, 1) work as the pixel baseline.
    """
    from sklearn.linear_model import LogisticRegression

    flat = lambda a: np.asarray(a, "float64").reshape(len(a), -1)  # noqa: E731
    probe = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    probe.fit(flat(train_features), train_labels)
    return float(probe.score(flat(test_features), test_labels))


def evaluate_clip(model, tokenizer, train, test):
    """Accuracies on the test split: zero-shot (held-out and training templates, held-out split
    into word-only and numeral-only prompts) and linear probes on CLIP embeddings / raw pixels.

    train, test: (images, labels). Returns a dict of floats; chance is 0.10.
    """
    (x_tr, y_tr), (x_te, y_te) = train, test
    f_tr, f_te = embed_images(model, x_tr), embed_images(model, x_te)
    zs_held = zero_shot_classify(model, tokenizer, x_te, digit_prompts(ZERO_SHOT_TEMPLATES))
    zs_train = zero_shot_classify(model, tokenizer, x_te, digit_prompts(CAPTION_TEMPLATES))
    # Split the held-out prompts by how they name the digit: did "seven" and "7" both learn it?
    words = [t for t in ZERO_SHOT_TEMPLATES if "{w}" in t]
    numerals = [t for t in ZERO_SHOT_TEMPLATES if "{d}" in t]
    zs_words = zero_shot_classify(model, tokenizer, x_te, digit_prompts(words))
    zs_numerals = zero_shot_classify(model, tokenizer, x_te, digit_prompts(numerals))
    return {
        "zero_shot_heldout_templates": float(np.mean(zs_held == y_te)),
        "zero_shot_training_templates": float(np.mean(zs_train == y_te)),
        "zero_shot_heldout_words_only": float(np.mean(zs_words == y_te)),
        "zero_shot_heldout_numerals_only": float(np.mean(zs_numerals == y_te)),
        "probe_clip_embeddings": linear_probe(f_tr, y_tr, f_te, y_te),
        "probe_raw_pixels": linear_probe(x_tr, y_tr, x_te, y_te),
    }
