"""The bad-input table: every row is an input a user can hand a public entry point, and the
start of the message it gets. ``tests/test_bad_input.py`` runs every row; the table in the
README (between ``<!-- bad-inputs -->`` markers) is rendered from ``ROWS`` by ``render()`` and a
test keeps the two identical (``python tests/bad_inputs.py`` rewrites the README section).

A row: (entry point, what is wrong, call(ctx) that must raise, a piece of the message).
``ctx`` holds tiny fixtures built once (``make_context``).
"""

import os
import re
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bad-inputs -->", "<!-- /bad-inputs -->"


def make_context():
    from ptft_keras import models, tokenizers

    texts = ["a good movie", "a bad film", "great acting and a fine plot", "boring and long"] * 5
    tok = tokenizers.WordPieceTokenizer.train(texts, vocabulary_size=60, min_frequency=1)
    backbone = models.TransformerBackbone(tok.vocabulary_size(), max_sequence_length=8,
                                          num_layers=1, hidden_dim=8, num_heads=2,
                                          intermediate_dim=16)
    folder = tempfile.mkdtemp(prefix="ptft_bad_")
    Path(folder, "truncated.keras").write_bytes(b"PK\x03\x04 cut short")
    Path(folder, "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n")
    # A data directory whose course checkpoint has one byte changed, another with none at all.
    damaged = Path(folder, "data_damaged", "checkpoints", "en_mlm")
    damaged.mkdir(parents=True)
    for name in ("backbone.keras", "vocab.txt", "provenance.json"):
        content = (ROOT / "data" / "checkpoints" / "en_mlm" / name).read_bytes()
        if name == "backbone.keras":
            content = content[:1000] + bytes([content[1000] ^ 1]) + content[1001:]
        (damaged / name).write_bytes(content)
    for copy in ("data_damaged", "data_without"):
        Path(folder, copy).mkdir(exist_ok=True)
        Path(folder, copy, "MANIFEST.json").write_bytes((ROOT / "data" / "MANIFEST.json").read_bytes())
    return {
        "texts": texts, "tok": tok, "ids": tok.encode(texts, 8), "labels": np.array([0, 1] * 10),
        "backbone": backbone, "classifier": models.build_classifier(backbone, 2),
        "folder": folder,
    }


def _ft(ctx, x=None, y=None, **kwargs):
    from ptft_keras import finetuning

    x = ctx["ids"] if x is None else x
    y = ctx["labels"] if y is None else y
    return finetuning.finetune(ctx["classifier"], (x, y), epochs=1, **kwargs)


def _checkpoint_in(folder):
    from ptft_keras import models

    old = os.environ.get("PTFT_DATA_DIR")
    os.environ["PTFT_DATA_DIR"] = folder
    try:
        return models.load_course_checkpoint()
    finally:
        if old is None:
            del os.environ["PTFT_DATA_DIR"]
        else:
            os.environ["PTFT_DATA_DIR"] = old


def _tokenizers():
    from ptft_keras import tokenizers
    return tokenizers


def _models():
    from ptft_keras import models
    return models


def _objectives():
    from ptft_keras import objectives
    return objectives


def _data():
    from ptft_keras import data
    return data


def _saving():
    from ptft_keras import saving
    return saving


def _evaluation():
    from ptft_keras import evaluation
    return evaluation


V = 60  # vocabulary of the context's tokenizer (checked in the test)
ROWS = [
    # --- tokenizers
    ("WordPieceTokenizer.train", "no texts",
     lambda c: _tokenizers().WordPieceTokenizer.train([], vocabulary_size=50),
     "tokenizer training texts is empty (0 texts)"),
    ("WordPieceTokenizer.train", "one string instead of a list",
     lambda c: _tokenizers().WordPieceTokenizer.train("one text", vocabulary_size=50),
     "texts is a single str, not a sequence"),
    ("WordPieceTokenizer.train", "vocabulary_size=3 (fewer than the special tokens)",
     lambda c: _tokenizers().WordPieceTokenizer.train(c["texts"], vocabulary_size=3),
     "vocab_size must be an int larger than the 5 special tokens"),
    ("WordPieceTokenizer.encode", "bytes that are not UTF-8",
     lambda c: c["tok"].encode([b"\xff\xfe"], 8), "bytes that are not valid UTF-8"),
    ("WordPieceTokenizer.encode", "a missing text (None / NaN)",
     lambda c: c["tok"].encode([None, "fine"], 8), "texts must be str (or UTF-8 bytes)"),
    ("WordPieceTokenizer.encode", "sequence_length='48' (a str)",
     lambda c: c["tok"].encode(c["texts"], "48"), "sequence_length must be an int"),
    ("WordPieceTokenizer.encode", "sequence_length=2 (no room for [CLS] text [SEP])",
     lambda c: c["tok"].encode(c["texts"], 2), "leaves no room for text"),
    ("WordPieceTokenizer.decode", "ids outside the vocabulary",
     lambda c: c["tok"].decode([[9999]]), "are outside this vocabulary"),
    ("WordPieceTokenizer.load", "a missing vocab.txt",
     lambda c: _tokenizers().WordPieceTokenizer.load(os.path.join(c["folder"], "none.txt")),
     "No vocabulary file at"),
    ("WordPieceTokenizer.load", "a vocab.txt without the special tokens",
     lambda c: _tokenizers().WordPieceTokenizer.load(os.path.join(c["folder"], "vocab.txt")),
     "The vocabulary must start with"),
    # --- models
    ("models.TransformerBackbone", "vocabulary_size=0",
     lambda c: _models().TransformerBackbone(0, max_sequence_length=8),
     "vocabulary_size must be a positive int"),
    ("models.TransformerBackbone", "hidden_dim not divisible by num_heads",
     lambda c: _models().TransformerBackbone(V, hidden_dim=10, num_heads=3),
     "is not divisible by num_heads"),
    ("models.LSTMBackbone", "hidden_dim=0",
     lambda c: _models().LSTMBackbone(V, hidden_dim=0), "hidden_dim must be a positive int"),
    ("models.build_classifier", "num_classes=1",
     lambda c: _models().build_classifier(c["backbone"], num_classes=1),
     "num_classes must be an int of at least 2"),
    ("models.TextClassifier", "a tokenizer from another vocabulary (more tokens than the backbone)",
     lambda c: _models().TextClassifier(
         tokenizer=_tokenizers().WordPieceTokenizer.train(c["texts"] * 3, vocabulary_size=200,
                                                          min_frequency=1),
         classifier=c["classifier"], sequence_length=8),
     "the tokenizer and the model do not match"),
    ("models.TextClassifier", "a keras-hub preprocessor of another family (BERT's) for our backbone",
     lambda c: _models().TextClassifier(
         preprocessor=__import__("keras_hub").models.BertTextClassifierPreprocessor(
             __import__("keras_hub").models.BertTokenizer(vocabulary=c["tok"].vocabulary),
             sequence_length=8),
         classifier=c["classifier"]),
     "preprocessor is a BertTextClassifierPreprocessor, a preprocessor of another model family"),
    ("models.TextClassifier", "sequence_length longer than the backbone's maximum",
     lambda c: _models().TextClassifier(tokenizer=c["tok"], classifier=c["classifier"],
                                        sequence_length=64),
     "is longer than the backbone's max_sequence_length=8"),
    # --- objectives
    ("objectives.MLMDataset", "no sequences",
     lambda c: _objectives().MLMDataset(np.zeros((0, 8), "int32"), V), "got no sequences"),
    ("objectives.MLMDataset", "ids outside the vocabulary",
     lambda c: _objectives().MLMDataset(np.full((4, 8), V + 5, "int32"), V),
     "does not fit the model's embedding table of 60 rows"),
    ("objectives.MLMDataset", "one sequence (1-D) instead of a batch",
     lambda c: _objectives().MLMDataset(np.ones(8, "int32"), V), "must be a 2-D array"),
    # --- finetuning
    ("finetuning.finetune", "labels outside the label set",
     lambda c: _ft(c, y=c["labels"] + 1), "outside the label set 0..1"),
    ("finetuning.finetune", "NaN / infinite labels",
     lambda c: _ft(c, y=np.where(c["labels"] == 0, np.nan, 1.0)), "missing (None/NaN) or infinite"),
    ("finetuning.finetune", "string labels",
     lambda c: _ft(c, y=np.array(["pos", "neg"] * 10)), "integer class ids are expected"),
    ("finetuning.finetune", "no examples",
     lambda c: _ft(c, x=c["ids"][:0], y=c["labels"][:0]), "is empty"),
    ("finetuning.finetune", "as many texts as labels? (20 vs 5)",
     lambda c: _ft(c, y=c["labels"][:5]), "has 20 texts but 5 labels"),
    ("finetuning.finetune", "raw strings instead of token ids",
     lambda c: _ft(c, x=np.array(c["texts"])), "encode the texts first"),
    ("finetuning.finetune", "float token ids",
     lambda c: _ft(c, x=c["ids"] + 0.5), "must be integers"),
    ("finetuning.finetune", "token ids outside the vocabulary",
     lambda c: _ft(c, x=c["ids"] + V), "does not fit the model's embedding table"),
    ("finetuning.finetune", "sequences longer than max_sequence_length",
     lambda c: _ft(c, x=np.ones((20, 12), "int32")), "takes at most 8 (its max_sequence_length)"),
    ("finetuning.finetune", "an unknown strategy",
     lambda c: _ft(c, strategy="partial"), "Unknown strategy 'partial'"),
    ("finetuning.finetune", "monitor='loss'",
     lambda c: _ft(c, monitor="loss"), "choose 'val_loss' or 'val_accuracy'"),
    # --- evaluation
    ("evaluation.classification_metrics", "NaN scores (a diverged model)",
     lambda c: _evaluation().classification_metrics(c["labels"], np.full((20, 2), np.nan)),
     "y_score contains NaN"),
    ("evaluation.classification_metrics", "scores for other examples (20 labels, 5 rows)",
     lambda c: _evaluation().classification_metrics(c["labels"], np.ones((5, 2))),
     "y_true has 20 labels but y_score has 5 rows"),
    # --- data loaders
    ("data.load_en_reviews", "a misspelt domain",
     lambda c: _data().load_en_reviews(domain="films"), "invalid domain ['films']"),
    ("data.load_corpus", "an unknown language",
     lambda c: _data().load_corpus("fr"), "invalid lang 'fr'"),
    ("data.load_corpus", "max_chars=-1", lambda c: _data().load_corpus("en", max_chars=-1),
     "max_chars must be a positive int or None"),
    ("data.check_texts_labels", "texts and labels of different lengths",
     lambda c: _data().check_texts_labels(["a", "b"], [0]), "2 texts but 1 labels"),
    # --- model files
    ("saving.load_model", "a missing .keras file",
     lambda c: _saving().load_model(os.path.join(c["folder"], "none.keras")), "No model file at"),
    ("saving.load_model", "a truncated .keras file (an interrupted save)",
     lambda c: _saving().load_model(os.path.join(c["folder"], "truncated.keras")),
     "it is not a complete .keras (zip) archive"),
    ("models.load_course_checkpoint", "a checkpoint file changed by one byte",
     lambda c: _checkpoint_in(os.path.join(c["folder"], "data_damaged")),
     "Course checkpoint 'en_mlm':"),
    ("models.load_course_checkpoint", "the checkpoint missing",
     lambda c: _checkpoint_in(os.path.join(c["folder"], "data_without")),
     "Course checkpoint 'en_mlm':"),
]


def render():
    """The README table (Markdown) from ``ROWS``."""
    lines = ["| entry point | input | the error says (start) |", "|---|---|---|"]
    for entry, what, _, message in ROWS:
        lines.append(f"| `{entry}` | {what} | “{message} …” |")
    return "\n".join(lines)


def readme_section(text):
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    return match.group(1) if match else None


if __name__ == "__main__":
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section to fill.")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render() + "\n" + text[end:], encoding="utf-8")
    print(f"README: {len(ROWS)} rows")
