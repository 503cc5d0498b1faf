"""Measure a scaling grid: train models of several sizes on several data sizes, fit power laws."""

import time

import keras
import keras_hub
import numpy as np

from ptft_keras.objectives import causal_lm, mlm
from ptft_keras.scaling import training_flops, transformer_param_counts


# --- measuring a scaling grid ---------------------------------------------------------------------
def model_size(hidden_dim, num_layers=2, num_heads=None, intermediate_dim=None):
    """A GPT-2 size dict for ``run_scaling_grid``: heads of 16 dims (at least 1), d_ff = 4 d."""
    return dict(
        num_layers=int(num_layers), hidden_dim=int(hidden_dim),
        num_heads=int(num_heads or max(1, hidden_dim // 16)),
        intermediate_dim=int(intermediate_dim or 4 * hidden_dim),
    )


def _as_size(size):
    if isinstance(size, (int, np.integer)):
        return model_size(int(size))
    try:
        return model_size(**size)
    except TypeError as err:
        raise ValueError(
            f"A size is a hidden dim (int) or a dict with hidden_dim and optionally "
            f"num_layers, num_heads, intermediate_dim; got {size!r} ({err})."
        ) from None


def _lstm_lm(vocabulary_size, sequence_length, size, learning_rate):
    """A causal LSTM language model and its parameter counts (embeddings excluded, as Kaplan)."""
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocabulary_size, size["hidden_dim"], name="token_embedding")(tokens)
    for i in range(size["num_layers"]):
        x = keras.layers.LSTM(size["hidden_dim"], return_sequences=True, name=f"lstm_{i}")(x)
    logits = keras.layers.Dense(vocabulary_size, name="lm_head")(x)        # (batch, seq, vocab)
    model = keras.Model(tokens, logits, name="lstm_lm")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    total = int(model.count_params())
    embedding = vocabulary_size * size["hidden_dim"]
    return model, {"total": total, "non_embedding": total - embedding}


def _blocks(ids, block_length, name):
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"{name} must be a 1-D array of integer token ids (one stream; join documents "
            f"with a separator token, e.g. np.concatenate), got shape {ids.shape}, "
            f"dtype {ids.dtype}."
        )
    return causal_lm.chunk_token_stream([ids], block_length)


def run_scaling_grid(
    train_ids, val_ids, vocabulary_size, sizes, token_budgets, sequence_length=64,
    batch_size=16, learning_rate=3e-3, seed=0, verbose=False, family="gpt2",
):
    """Train one causal LM per size; its validation loss after each token budget.

    family: "gpt2" (keras-hub GPT2Backbone + ``causal_lm.CausalLMPretrainer``) or "lstm"
    (embedding -> one unidirectional LSTM of width hidden_dim -> softmax; num_layers LSTMs if a
    size dict says so). At CPU budgets (1e5-1e6 tokens) a tiny Transformer sits on the unigram
    plateau for a random number of steps, which scrambles the size axis; an LSTM leaves it
    within a few dozen steps, so its sizes come out in order. Same objective either way.

    train_ids, val_ids: 1-D int token streams. sizes: hidden dims (ints, see ``model_size``)
    or size dicts. token_budgets: training tokens; the train stream is cut into blocks of
    sequence_length + 1, shuffled once with ``seed`` and read in that order, never repeating a
    token (so tokens seen = data size). Returns a pandas DataFrame, one row per (size, budget):
    size, num_layers, hidden_dim, params (total), non_embedding_params, tokens (actually
    seen: whole batches), steps, val_loss (mean token cross-entropy, nats), train_loss (mean
    over the last segment), flops (6 N D with non-embedding N), seconds (training so far).

    One run per size serves every budget: the learning rate is constant, so a run stopped
    after D1 tokens is exactly the first D1 tokens of a run to D2. That is why the grid costs
    one model per size, not sizes x budgets (with a decaying schedule it would not be exact).
    Models are GPT-2 backbones (keras-hub) + ``causal_lm.CausalLMPretrainer``, dropout 0.

    What to expect on a CPU (measured on the course corpus, 1e4-3e5 tokens): the loss falls
    clearly with tokens, but differs little, and not always in order, between sizes: every
    model is still limited by its number of steps (Kaplan et al.'s learning curves of all sizes
    also overlap early). A size trend needs the smallest models to saturate first: more tokens
    (FULL mode) or a task they can saturate on.
    """
    import pandas as pd

    check_ids = np.concatenate([np.asarray(train_ids).ravel(), np.asarray(val_ids).ravel()])
    if check_ids.size and (check_ids.min() < 0 or check_ids.max() >= vocabulary_size):
        raise ValueError(
            f"Token ids must lie in [0, {vocabulary_size}); found {check_ids.min()}..."
            f"{check_ids.max()}. Pass the tokenizer's vocabulary size."
        )
    train = _blocks(train_ids, sequence_length + 1, "train_ids")
    # A fixed random order of blocks: every budget is a random sample of the corpus (not its
    # first chapters), and a smaller budget's blocks are the start of a larger one's.
    train = train[np.random.default_rng(seed).permutation(len(train))]
    val = _blocks(val_ids, sequence_length + 1, "val_ids")
    if len(val) == 0:
        raise ValueError(f"val_ids holds fewer than {sequence_length + 1} tokens.")
    budgets = sorted(int(b) for b in token_budgets)
    if not budgets or budgets[0] < batch_size * sequence_length:
        raise ValueError(
            f"Every token budget must cover at least one batch ({batch_size * sequence_length} "
            f"tokens), got {token_budgets}."
        )
    tokens_per_step = batch_size * sequence_length
    steps = [b // tokens_per_step for b in budgets]
    if steps[-1] * batch_size > len(train):
        raise ValueError(
            f"The largest budget ({budgets[-1]} tokens) needs {steps[-1] * batch_size} "
            f"blocks of {sequence_length + 1}, but train_ids holds {len(train)} "
            f"({len(train) * sequence_length} trainable tokens): lower it or pass more text."
        )
    x_train, y_train, w_train = causal_lm.causal_lm_arrays(train)
    x_val, y_val, w_val = causal_lm.causal_lm_arrays(val)

    if family not in ("gpt2", "lstm"):
        raise ValueError(f"family must be 'gpt2' or 'lstm', got {family!r}.")
    rows = []
    for size in sizes:
        size = _as_size(size)
        keras.utils.set_random_seed(seed)
        if family == "gpt2":
            backbone = keras_hub.models.GPT2Backbone(
                vocabulary_size=vocabulary_size, max_sequence_length=sequence_length,
                dropout=0.0, **size,
            )
            model = mlm.compile_lm(causal_lm.CausalLMPretrainer(backbone), learning_rate)
            counts = transformer_param_counts(
                size["num_layers"], size["hidden_dim"], vocabulary_size, sequence_length,
                size["intermediate_dim"],
            )
            total = int(backbone.count_params())
        else:
            model, counts = _lstm_lm(vocabulary_size, sequence_length, size, learning_rate)
            total = counts["total"]
        label = ("L" if family == "gpt2" else "LSTM") + f"{size['num_layers']}-d{size['hidden_dim']}"
        # The LSTM needs no padding mask: every block is full length.
        feed = (lambda x: x) if family == "gpt2" else (lambda x: x["token_ids"])
        done, seconds = 0, 0.0
        for budget, step in zip(budgets, steps):
            part = slice(done * batch_size, step * batch_size)
            train_loss = float("nan")
            if step > done:
                start = time.perf_counter()
                history = model.fit(
                    feed({k: v[part] for k, v in x_train.items()}), y_train[part],
                    sample_weight=w_train[part],
                    batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                )
                seconds += time.perf_counter() - start
                train_loss = float(history.history["loss"][-1])
            done = step
            val_loss = float(model.evaluate(feed(x_val), y_val, sample_weight=w_val, batch_size=64,
                                            verbose=0, return_dict=True)["loss"])
            tokens = step * tokens_per_step
            rows.append(dict(
                size=label, num_layers=size["num_layers"], hidden_dim=size["hidden_dim"],
                params=total, non_embedding_params=counts["non_embedding"], tokens=tokens,
                steps=step, val_loss=val_loss, train_loss=train_loss,
                flops=training_flops(counts["non_embedding"], tokens), seconds=seconds,
            ))
            if verbose:
                print(f"{label:>10} {tokens:>9,} tokens  val loss {val_loss:.3f}  "
                      f"({seconds:.1f} s)")
    return pd.DataFrame(rows)
