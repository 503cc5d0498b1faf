"""What the course checkpoint buys: fine-tune it and a from-scratch copy on few labels (issue 11).

Loads ``backbone.keras`` and ``vocab.txt`` from ``--checkpoint`` (written by
``scripts/pretrain_checkpoint.py``), encodes the movie reviews with the checkpoint's own
vocabulary and runs ``experiments.recipe.fewshot_gain`` at each label budget: the same protocol
for both arms (learning rate chosen on 400 validation labels, early stopping, mean pooling,
full fine-tuning), 3 seeds. Results go to ``--out`` (JSON).

    python scripts/checkpoint_gain.py --checkpoint data/checkpoints/en_mlm --labels 200,1000
"""

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402

from ptft_keras import config, data, saving, tokenizers  # noqa: E402
from ptft_keras.experiments import recipe as R  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=os.path.join("data", "checkpoints", "en_mlm"))
    parser.add_argument("--labels", default="200,1000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--learning-rates", default="1e-3,3e-4,1e-4")
    parser.add_argument("--probe-epochs", type=int, default=0)
    parser.add_argument("--domain", default="movie")
    parser.add_argument("--out", default="bench/checkpoint_gain.json")
    args = parser.parse_args()
    config.set_seed(0)

    provenance = json.load(open(os.path.join(args.checkpoint, "provenance.json")))
    recipe = R.Recipe(**provenance["recipe"])
    backbone = saving.load_model(os.path.join(args.checkpoint, "backbone.keras"))
    tok = tokenizers.WordPieceTokenizer.load(os.path.join(args.checkpoint, "vocab.txt"))
    V, S = tok.vocabulary_size(), provenance["sequence_length"]
    reviews = data.load_en_reviews()
    frame = reviews[reviews.domain == args.domain]
    val = frame[frame.split == "val"].sample(n=400, random_state=0)
    test = frame[frame.split == "test"]
    encode = lambda f: (tok.encode(f.text.tolist(), S), f.label.to_numpy())
    rows = []
    for n in [int(v) for v in args.labels.split(",")]:
        train = frame[frame.split == "train"].sample(n=n, random_state=0)
        start = time.perf_counter()
        runs = R.fewshot_gain(recipe, backbone.get_weights(), V, encode(train), encode(val),
                              encode(test), seeds=[int(s) for s in args.seeds.split(",")],
                              learning_rates=[float(v) for v in args.learning_rates.split(",")],
                              probe_epochs=args.probe_epochs)
        for run in runs:
            rows.append({"labels": n, **run})
        acc = {arm: [r["test_accuracy"] for r in runs if r["arm"] == arm]
               for arm in ("pre-trained", "scratch")}
        gap = np.array(acc["pre-trained"]) - np.array(acc["scratch"])
        print(f"{n:5d} labels: checkpoint {np.mean(acc['pre-trained']):.3f} vs scratch "
              f"{np.mean(acc['scratch']):.3f}, paired gap {gap.mean():+.3f} "
              f"(per seed {np.round(gap, 3).tolist()}); {time.perf_counter() - start:.0f} s",
              flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"checkpoint": args.checkpoint, "recipe": dataclasses.asdict(recipe),
                   "checkpoint_steps": provenance.get("steps"), "domain": args.domain,
                   "test_size": int(len(test)), "probe_epochs": args.probe_epochs,
                   "runs": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
