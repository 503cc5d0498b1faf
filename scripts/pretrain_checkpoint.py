"""Pre-train the course checkpoint: our own encoder, our own code, a bigger budget (issue 11).

The same recipe as a notebook's live run, for many more steps, on every unlabeled English text
the course ships (the training review sentences and the English corpus, split into sentences).
Writes to ``--out`` (default ``data/checkpoints/en_mlm``):

- ``backbone.keras``  the encoder (``models.TransformerBackbone`` or ``LSTMBackbone``)
- ``vocab.txt``       its WordPiece vocabulary (``tokenizers.WordPieceTokenizer.load``)
- ``provenance.json`` recipe, corpus counts, tokens seen, wall time, the held-out loss curve,
                      the unigram plateau and the sha256 of the two files above

Interrupted runs resume: every epoch is backed up under ``<out>/backup`` (``saving.BackupAndRestore``);
run the same command again and it continues where it stopped, to the same weights.

    python scripts/pretrain_checkpoint.py --steps 20000            # tens of CPU minutes
    python scripts/pretrain_checkpoint.py --steps 1 --out /tmp/ck    # a smoke run: one pass
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ptft_keras import config, data, objectives, saving, tokenizers  # noqa: E402
from ptft_keras.data.loaders import _sha256 as sha256  # noqa: E402 (the manifest's checksum)
from ptft_keras.experiments import recipe as R  # noqa: E402
from ptft_keras.models import checkpoint  # noqa: E402

# The recipe the sweep found (bench/recipe_sweep.json): post-LN, dropout 0.1, AdamW at a
# constant 1e-3, 15% masking, and a 3-token locality prior before every block.
DEFAULT = R.Recipe("course", normalize_first=False, dropout=0.1, learning_rate=1e-3, decay=False,
                   beta_2=0.999, clipnorm=None, local_kernel_size=3)


def corpus_sentences(min_words=4):
    lines = data.load_corpus("en")
    return [s.strip() for line in lines for s in re.split(r"(?<=[.!?])\s+", line)
            if len(s.split()) >= min_words]


class HeldOut(keras.callbacks.Callback):
    """Held-out masked-token perplexity at the end of every epoch (the loss curve we ship),
    written to ``path`` each time so that it survives an interruption too."""

    def __init__(self, heldout, curve, path):
        super().__init__()
        self.heldout, self.curve, self.path = heldout, curve, path

    def on_epoch_end(self, epoch, logs=None):
        result = objectives.evaluate_mlm(self.model, self.heldout)
        # A run killed after this point but before its backup repeats the epoch: keep one entry.
        self.curve[:] = [point for point in self.curve if point["epoch"] < epoch]
        self.curve.append({"epoch": epoch, "train_loss": float(logs["loss"]),
                           "heldout_perplexity": result["perplexity"],
                           "heldout_masked_accuracy": result["masked_accuracy"]})
        with open(self.path, "w") as handle:
            json.dump(self.curve, handle)
        print(f"[{time.strftime('%H:%M:%S')}] epoch {epoch}: loss {logs['loss']:.3f}, held-out perplexity "
              f"{result['perplexity']:.1f}, masked accuracy {result['masked_accuracy']:.3f}",
              flush=True)


def register_in_manifest(out, provenance):
    """List the checkpoint's files with their sha256 in the data manifest, when ``out`` lies in
    the data directory (``models.load_course_checkpoint`` verifies them). Returns True if so."""
    root = data.data_dir().resolve()
    out = os.path.realpath(out)
    if os.path.commonpath([str(root), out]) != str(root):
        return False
    folder = os.path.relpath(out, root).replace(os.sep, "/")
    path = root / "MANIFEST.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for filename in checkpoint.FILES:  # the files load_course_checkpoint verifies
        file = os.path.join(out, filename)
        manifest["files"][f"{folder}/{filename}"] = {
            "built_by": provenance["command"],
            "sources": ["en_reviews.csv (train split texts)", "en_corpus.txt"],
            "license": "MIT (derived from vaderSentiment's review texts; the corpus texts are "
                       "public domain / CC0)",
            "sha256": sha256(file), "bytes": os.path.getsize(file)}
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    saving._atomic_write(str(path), lambda handle: handle.write(text.encode("utf-8")))
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000,
                        help="optimizer steps in all, rounded up to whole passes over the data "
                             "(one pass = one epoch: a backup and a held-out evaluation)")
    parser.add_argument("--kind", choices=("transformer", "lstm"), default="transformer")
    parser.add_argument("--vocabulary", type=int, default=4000)
    parser.add_argument("--sequence-length", type=int, default=48)
    parser.add_argument("--out", default=os.path.join("data", "checkpoints", "en_mlm"))
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be positive")
    config.set_seed(0)

    reviews = data.load_en_reviews()
    texts = reviews[reviews.split == "train"].text.tolist() + corpus_sentences()
    recipe = dataclasses.replace(DEFAULT, kind=args.kind, name=f"course-{args.kind}")
    tok = tokenizers.WordPieceTokenizer.train(texts, vocabulary_size=args.vocabulary)
    V, S = tok.vocabulary_size(), args.sequence_length
    ids = tok.encode(texts, S)
    heldout = objectives.MLMDataset(tok.encode(reviews[reviews.split == "val"].text.tolist(), S),
                                    V, batch_size=256, dynamic=False, shuffle=False, seed=1)
    plateau = R.unigram_perplexity(ids, heldout, V)
    print(f"[{time.strftime('%H:%M:%S')}] {len(texts):,} sequences ({int((ids > 0).sum()):,} tokens), vocabulary {V}; "
          f"held-out unigram perplexity {plateau['perplexity']:.0f}", flush=True)

    keras.utils.set_random_seed(0)
    backbone = R.build_backbone(recipe, V, S)
    mlm = objectives.MaskedLMPretrainer(backbone, compile=False)
    mlm.compile(optimizer=keras.optimizers.AdamW(recipe.learning_rate, weight_decay=0.01,
                                                 beta_2=recipe.beta_2))
    batches = objectives.MLMDataset(ids, V, batch_size=recipe.batch_size, seed=0,
                                    mask_rate=recipe.mask_rate)
    mlm(batches[0][0])  # built before BackupAndRestore restores into it
    # Whole passes: a Keras epoch shorter than the data would end the next epoch early at the
    # data's end (and re-mask mid-pass), so an epoch here is one pass over the sequences.
    epochs = int(np.ceil(args.steps / len(batches)))
    os.makedirs(args.out, exist_ok=True)
    curve_path = os.path.join(args.out, "curve.partial.json")
    curve = json.load(open(curve_path)) if os.path.exists(curve_path) else []
    backup = saving.BackupAndRestore(os.path.join(args.out, "backup"), datasets=[batches])

    start = time.perf_counter()
    mlm.fit(batches, epochs=epochs, verbose=0,
            callbacks=[HeldOut(heldout, curve, curve_path), backup])
    wall = time.perf_counter() - start

    backbone_path = os.path.join(args.out, "backbone.keras")
    saving.save_model(backbone, backbone_path)
    vocab_path = tok.save(os.path.join(args.out, "vocab.txt"))
    provenance = {
        "recipe": dataclasses.asdict(recipe), "sequence_length": S, "vocabulary_size": V,
        "sequences": len(texts), "tokens_per_epoch_of_data": int((ids > 0).sum()),
        "steps": epochs * len(batches), "epochs": epochs,
        "tokens_seen": int(epochs * (ids > 0).sum()),
        "wall_seconds_this_call": wall, "unigram_perplexity": plateau["perplexity"],
        "top_token_share": plateau["top_token_share"], "curve": curve,
        "sha256": {"backbone.keras": sha256(backbone_path), "vocab.txt": sha256(vocab_path)},
        "command": " ".join(["python", "scripts/pretrain_checkpoint.py"] + sys.argv[1:]),
    }
    with open(os.path.join(args.out, "provenance.json"), "w") as handle:
        json.dump(provenance, handle, indent=1)
    os.remove(curve_path)
    listed = register_in_manifest(args.out, provenance)
    print(f"wrote {args.out}: {provenance['steps']} steps, final held-out perplexity "
          f"{curve[-1]['heldout_perplexity']:.1f} (plateau {plateau['perplexity']:.0f})"
          + ("; listed in data/MANIFEST.json" if listed else ""))


if __name__ == "__main__":
    main()
