"""The MLM recipe sweep behind chapter 3's "off the plateau" lesson (issue 11).

Each recipe pre-trains for the same wall-clock budget on the review texts (+ optionally the
English corpus), is scored on held-out review sentences against their unigram perplexity, then
fine-tuned on 200 movie-review labels next to a from-scratch copy (3 seeds, learning rate chosen
on 400 validation labels for both arms). Results go to bench/recipe_sweep.json.

    python scripts/recipe_sweep.py --seconds 90 --recipes old,preln,local3
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

import numpy as np  # noqa: E402

from ptft_keras import config, data, objectives, tokenizers  # noqa: E402
from ptft_keras.experiments import recipe as R  # noqa: E402

RECIPES = {
    # the course's recipe before issue 11: post-LN, dropout 0.1, constant 1e-3, 15% masking
    "old": R.Recipe("old", normalize_first=False, dropout=0.1, learning_rate=1e-3, decay=False,
                    beta_2=0.999, clipnorm=None),
    "preln": R.Recipe("preln", learning_rate=3e-3, mask_rate=0.2),
    "preln_1e-2": R.Recipe("preln_1e-2", learning_rate=1e-2, mask_rate=0.2),
    "local3": R.Recipe("local3", learning_rate=3e-3, mask_rate=0.2, local_kernel_size=3),
    "local5": R.Recipe("local5", learning_rate=3e-3, mask_rate=0.2, local_kernel_size=5),
    "local3_1e-2": R.Recipe("local3_1e-2", learning_rate=1e-2, mask_rate=0.2, local_kernel_size=3),
    "local3_b32": R.Recipe("local3_b32", learning_rate=3e-3, mask_rate=0.2, local_kernel_size=3,
                           batch_size=32),
    "local3_m15": R.Recipe("local3_m15", learning_rate=3e-3, mask_rate=0.15, local_kernel_size=3),
    "local3_1layer": R.Recipe("local3_1layer", learning_rate=3e-3, mask_rate=0.2,
                              local_kernel_size=3, num_layers=1),
    "bilstm": R.Recipe("bilstm", kind="lstm", learning_rate=3e-3, mask_rate=0.2),
    # one change at a time from "old"
    "old_preln": R.Recipe("old_preln", normalize_first=True, dropout=0.1, learning_rate=1e-3,
                          decay=False, beta_2=0.999, clipnorm=None),
    "old_nodrop": R.Recipe("old_nodrop", normalize_first=False, dropout=0.0, learning_rate=1e-3,
                           decay=False, beta_2=0.999, clipnorm=None),
    "old_2e-3": R.Recipe("old_2e-3", normalize_first=False, dropout=0.1, learning_rate=2e-3,
                         decay=False, beta_2=0.999, clipnorm=None),
    "old_local3": R.Recipe("old_local3", normalize_first=False, dropout=0.1, learning_rate=1e-3,
                           decay=False, beta_2=0.999, clipnorm=None, local_kernel_size=3),
    "old_decay": R.Recipe("old_decay", normalize_first=False, dropout=0.1, learning_rate=1e-3,
                          beta_2=0.999, clipnorm=None),
}


def sentences(lines, limit):
    out = []
    for line in lines:
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", line) if len(s.split()) >= 4]
        if len(out) >= limit:
            break
    return out[:limit]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="old,preln,local3,bilstm")
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--vocabulary", type=int, default=4000)
    parser.add_argument("--sequence-length", type=int, default=48)
    parser.add_argument("--corpus-sentences", type=int, default=0,
                        help="English-corpus sentences added to the review texts")
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--monitor", default="val_accuracy", choices=("val_loss", "val_accuracy"))
    parser.add_argument("--probe-epochs", type=int, default=0)
    parser.add_argument("--save-dir", default=None, help="keep each recipe's pre-trained weights")
    parser.add_argument("--reuse", action="store_true",
                        help="load the weights in --save-dir instead of pre-training again")
    parser.add_argument("--out", default="bench/recipe_sweep.json")
    args = parser.parse_args()
    config.set_seed(0)

    reviews = data.load_en_reviews()
    unlabeled = reviews[reviews.split == "train"].text.tolist()
    unlabeled += sentences(data.load_corpus("en"), args.corpus_sentences) if args.corpus_sentences else []
    tok = tokenizers.WordPieceTokenizer.train(unlabeled, vocabulary_size=args.vocabulary)
    V, S = tok.vocabulary_size(), args.sequence_length
    train_ids = tok.encode(unlabeled, S)
    heldout_texts = reviews[reviews.split == "val"].text.tolist()
    heldout = objectives.MLMDataset(tok.encode(heldout_texts, S), V, batch_size=256,
                                    dynamic=False, shuffle=False, seed=1)
    plateau = R.unigram_perplexity(train_ids, heldout, V)
    movie = reviews[reviews.domain == "movie"]
    pick = lambda split, n: movie[movie.split == split].sample(n=n, random_state=0) if n else movie[movie.split == split]
    parts = {name: pick(split, n) for name, split, n in
             (("train", "train", args.labels), ("val", "val", 400), ("test", "test", None))}
    split = {k: (tok.encode(f.text.tolist(), S), f.label.to_numpy()) for k, f in parts.items()}
    print(f"vocabulary {V}, {len(train_ids):,} sequences; held-out unigram perplexity "
          f"{plateau['perplexity']:.0f}, top-token share {plateau['top_token_share']:.3f}", flush=True)

    results = []
    if os.path.exists(args.out):
        results = json.load(open(args.out))["results"]
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        start = time.perf_counter()
        saved = args.save_dir and os.path.join(args.save_dir, f"{name}.weights.h5")
        if args.reuse and saved and os.path.exists(saved):  # fine-tuning protocols only
            backbone = R.build_backbone(recipe, V, S)
            backbone.load_weights(saved)
            # (the MLM head is not kept: the perplexity is in the run that saved the weights)
            info = {"steps": None, "seconds": None, "curve": [], "perplexity": float("nan"),
                    "masked_accuracy": float("nan")}
        else:
            backbone, info = R.pretrain(recipe, train_ids, heldout, V, seconds=args.seconds,
                                        eval_every=100, seed=0)
        if args.save_dir:
            os.makedirs(args.save_dir, exist_ok=True)
            backbone.save_weights(os.path.join(args.save_dir, f"{name}.weights.h5"))
        row = {"recipe": dataclasses.asdict(recipe), "monitor": args.monitor,
               "probe_epochs": args.probe_epochs, "seconds_budget": args.seconds,
               "vocabulary": V, "corpus_sentences": args.corpus_sentences, **info,
               "unigram_perplexity": plateau["perplexity"],
               "top_token_share": plateau["top_token_share"]}
        print(f"{name:14s} {info['steps'] or 0:5d} steps {info['seconds'] or 0:5.0f} s  ppl "
              f"{info['perplexity']:7.1f} (plateau {plateau['perplexity']:.0f})  acc "
              f"{info['masked_accuracy']:.3f}  curve {[(s, round(p)) for s, _, p in info['curve']]}",
              flush=True)
        if not args.no_finetune:
            rows = R.fewshot_gain(recipe, backbone.get_weights(), V, split["train"],
                                  split["val"], split["test"], monitor=args.monitor,
                                  probe_epochs=args.probe_epochs)
            row["fewshot"] = rows
            acc = {arm: np.mean([r["test_accuracy"] for r in rows if r["arm"] == arm])
                   for arm in ("pre-trained", "scratch")}
            print(f"{'':14s} {args.labels} labels: pre-trained {acc['pre-trained']:.3f} vs "
                  f"scratch {acc['scratch']:.3f} (gap {acc['pre-trained'] - acc['scratch']:+.3f}); "
                  f"{time.perf_counter() - start:.0f} s in all", flush=True)
        results.append(row)
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump({"results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
