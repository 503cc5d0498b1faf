"""Pre-training throughput of every family with its own objective, at one shared small config.

Each family is built by ``ptft_keras.families.build_family`` (2 layers, hidden 128, 4 heads,
FFN 512, ALBERT embedding 32, sequence 128, batch 16, its own tokenizer with ~4,000 entries
trained on the course corpus) and trained with ``train_on_batch`` on real batches from its own
data function. tokens/s = batch x model input length / median step time (T5: encoder length).
The first ``--warmup`` steps (tracing) are not timed; the median resists other jobs on the cores.

For MLM and causal LM the same run also times keras-hub's own task models on the same backbone
config, the same batches and the same optimizer (AdamW 5e-4), alternating single steps (ABBA
order) so that machine load hits both alike:

- MLM: our ``MaskedLMPretrainer`` on a ``BertBackbone`` vs keras-hub ``BertMaskedLM``;
- causal LM: our ``CausalLMPretrainer`` on a ``GPT2Backbone`` vs keras-hub ``GPT2CausalLM``.

ratio = our speed / keras-hub's, the median over neighbouring step pairs of their step time
divided by ours (>= 0.95 required: ours must not be slower). Besides wall
time, each step's process CPU time is recorded: on a shared machine CPU-seconds per step show
the work a step needs even when other jobs take cores away.

    python bench/bench_objectives.py            # about 5 minutes on a 2-core CPU
    python bench/bench_objectives.py --quick    # fewer steps, smoke test
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
from keras import ops  # noqa: E402

from ptft_keras import config# noqa: E402
from ptft_keras import data
from ptft_keras.objectives import families
from ptft_keras import objectives

SIZE = dict(num_layers=2, hidden_dim=128, num_heads=4, intermediate_dim=512, embedding_dim=32,
            sequence_length=128, learning_rate=5e-4)
BATCH = 16
VOCABULARY = 4000


def to_tensors(batch):
    """(x, y, w) with every array a tensor: both sides skip the same conversion work."""
    return tuple(
        {k: ops.convert_to_tensor(v) for k, v in part.items()} if isinstance(part, dict)
        else ops.convert_to_tensor(part)
        for part in batch
    )


def input_tokens(x):
    ids = x.get("token_ids", x.get("encoder_token_ids"))
    return int(ids.shape[0] * ids.shape[1])


def timed_steps(model, batches, steps, start=0):
    """Wall and CPU seconds of ``steps`` train_on_batch calls, cycling through ``batches``."""
    wall, cpu = [], []
    for i in range(steps):
        x, y, w = batches[(start + i) % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        model.train_on_batch(x, y, sample_weight=w)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def summary(label, objective, wall, cpu, tokens, params):
    step = statistics.median(wall)
    return dict(model=label, objective=objective, params=params, step_ms=1000 * step,
                cpu_ms=1000 * statistics.median(cpu), tokens_per_s=tokens / step)


def bench_family(name, tokenizer, texts, warmup, steps):
    config.set_seed(0)
    family = families.build_family(name, tokenizer, size=SIZE)
    dataset = family.make_data(texts, batch_size=BATCH)
    batches = [to_tensors(dataset[i]) for i in range(min(len(dataset) - 1, 8))]  # full batches
    timed_steps(family.model, batches, warmup)
    wall, cpu = timed_steps(family.model, batches, steps, start=warmup)
    return summary(f"{name} (ours)", families.INFO[name]["objective"], wall, cpu,
                   input_tokens(batches[0][0]), family.model.count_params())


def head_to_head(ours, theirs, batches, warmup, rounds):
    """Alternate single steps of the two models, ABBA order (ours, theirs, theirs, ours, ...)
    so that a load change on the shared machine hits both alike. Returns per-model (wall,
    cpu) lists, step i of one model taken right next to step i of the other."""
    times = {id(ours): ([], []), id(theirs): ([], [])}
    for model in (ours, theirs):
        timed_steps(model, batches, warmup)
    for r in range(rounds):
        for model in ((ours, theirs) if r % 2 == 0 else (theirs, ours)):
            wall, cpu = timed_steps(model, batches, 1, start=r)
            times[id(model)][0].extend(wall)
            times[id(model)][1].extend(cpu)
    return times[id(ours)], times[id(theirs)]


def paired_ratio(ours_wall, theirs_wall):
    """Median over neighbouring step pairs of theirs/ours time = our speed relative to theirs."""
    return statistics.median(t / o for o, t in zip(ours_wall, theirs_wall))


def optimizer():
    return keras.optimizers.AdamW(learning_rate=SIZE["learning_rate"], weight_decay=0.01)


def our_loss():
    """The loss ``compile_mlm`` / ``compile_lm`` use: mean over the weighted (predicted) tokens."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                      reduction="mean_with_sample_weight")


def bench_mlm(tokenizer, texts, warmup, rounds):
    """Our MaskedLMPretrainer vs keras-hub BertMaskedLM: same BertBackbone config and batches."""
    family = families.build_family("bert", tokenizer, size=SIZE)  # for its MLM batches
    dataset = family.make_data(texts, batch_size=BATCH)
    batches = []
    for i in range(min(len(dataset) - 1, 8)):
        x, y, w = dataset[i]
        batches.append(to_tensors((x, y["mlm"], w["mlm"])))

    def backbone():
        return keras_hub.models.BertBackbone(
            vocabulary_size=tokenizer.vocabulary_size(), num_layers=SIZE["num_layers"],
            num_heads=SIZE["num_heads"], hidden_dim=SIZE["hidden_dim"],
            intermediate_dim=SIZE["intermediate_dim"],
            max_sequence_length=SIZE["sequence_length"], dropout=0.0)

    config.set_seed(0)
    ours = objectives.MaskedLMPretrainer(backbone())
    ours.compile(optimizer=optimizer(), loss=our_loss(), weighted_metrics=[
        keras.metrics.SparseCategoricalAccuracy(name="masked_accuracy")])
    config.set_seed(0)
    theirs = keras_hub.models.BertMaskedLM(backbone(), preprocessor=None)
    theirs.compile(optimizer=optimizer())  # keras-hub's default loss and metrics
    (ow, oc), (tw, tc) = head_to_head(ours, theirs, batches, warmup, rounds)
    tokens = input_tokens(batches[0][0])
    return (summary("MaskedLMPretrainer (ours)", "MLM", ow, oc, tokens, ours.count_params()),
            summary("keras-hub BertMaskedLM", "MLM", tw, tc, tokens, theirs.count_params()),
            paired_ratio(ow, tw))


def bench_causal(tokenizer, texts, warmup, rounds):
    """Our CausalLMPretrainer vs keras-hub GPT2CausalLM: same GPT2Backbone config and batches."""
    family = families.build_family("gpt2", tokenizer, size=SIZE)
    dataset = family.make_data(texts, batch_size=BATCH)
    batches = [to_tensors(dataset[i]) for i in range(min(len(dataset) - 1, 8))]

    def backbone():
        return keras_hub.models.GPT2Backbone(
            vocabulary_size=tokenizer.vocabulary_size(), num_layers=SIZE["num_layers"],
            num_heads=SIZE["num_heads"], hidden_dim=SIZE["hidden_dim"],
            intermediate_dim=SIZE["intermediate_dim"],
            max_sequence_length=SIZE["sequence_length"], dropout=0.0)

    config.set_seed(0)
    ours = objectives.CausalLMPretrainer(backbone())
    ours.compile(optimizer=optimizer(), loss=our_loss(), weighted_metrics=[
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    config.set_seed(0)
    theirs = keras_hub.models.GPT2CausalLM(backbone(), preprocessor=None)
    theirs.compile(optimizer=optimizer())
    (ow, oc), (tw, tc) = head_to_head(ours, theirs, batches, warmup, rounds)
    tokens = input_tokens(batches[0][0])
    return (summary("CausalLMPretrainer (ours)", "causal LM", ow, oc, tokens, ours.count_params()),
            summary("keras-hub GPT2CausalLM", "causal LM", tw, tc, tokens,
                    theirs.count_params()),
            paired_ratio(ow, tw))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps: a smoke test")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--families", default=",".join(families.FAMILIES))
    args = parser.parse_args()
    steps, rounds = (4, 6) if args.quick else (12, 40)

    texts = data.load_corpus("en", max_chars=400_000)
    print(f"{config.device_name()}, keras {keras.__version__}, keras-hub "
          f"{keras_hub.__version__}, backend {keras.backend.backend()}, load average "
          f"{os.getloadavg()[0]:.1f}; config {SIZE}, batch {BATCH}, vocabulary ~{VOCABULARY}")
    tokenizers, rows = {}, []
    start = time.perf_counter()
    for name in args.families.split(","):
        tokenizers[name] = families.train_tokenizer(name, texts, VOCABULARY)
        rows.append(bench_family(name, tokenizers[name], texts, args.warmup, steps))
        print(f"  {rows[-1]['model']:<28} {rows[-1]['tokens_per_s']:8.0f} tok/s", flush=True)

    pairs = []
    for label, run, family in (("MLM", bench_mlm, "bert"), ("causal LM", bench_causal, "gpt2")):
        tokenizer = tokenizers.get(family) or families.train_tokenizer(family, texts, VOCABULARY)
        ours, theirs, ratio = run(tokenizer, texts, args.warmup, rounds)
        pairs.append((label, ours, theirs, ratio))
        rows.extend([ours, theirs])

    print(f"\nPre-training step throughput ({time.perf_counter() - start:.0f} s in all, load "
          f"average now {os.getloadavg()[0]:.1f})")
    print(f"{'model':<28} {'objective':<46} {'params':>9} {'step ms':>8} {'cpu ms':>8} "
          f"{'tok/s':>8}")
    for row in rows:
        print(f"{row['model']:<28} {row['objective'][:46]:<46} {row['params']:>9,} "
              f"{row['step_ms']:>8.1f} {row['cpu_ms']:>8.1f} {row['tokens_per_s']:>8.0f}")
    print("\nours / keras-hub speed (>= 0.95 required). paired = median over neighbouring steps")
    print("of their step time / ours (the pass/fail number: robust to load drifting on a shared")
    print("machine); medians = ratio of the tokens/s above; CPU = their / our CPU time per step.")
    ok = True
    for label, ours, theirs, ratio in pairs:
        medians = ours["tokens_per_s"] / theirs["tokens_per_s"]
        cpu_ratio = theirs["cpu_ms"] / ours["cpu_ms"]
        ok &= ratio >= 0.95
        print(f"  {label:<10} paired {ratio:5.2f}   medians {medians:5.2f}   CPU {cpu_ratio:5.2f}"
              f"   {'ok' if ratio >= 0.95 else 'SLOWER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
