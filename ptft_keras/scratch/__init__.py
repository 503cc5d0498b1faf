"""Chapter 2 from scratch: the mathematics behind pre-training and fine-tuning, in NumPy.

Everything here is written out by hand so that it can be read, and is checked against Keras'
built-ins (``tests/test_scratch.py`` and the chapter 2 notebook):

- 2.1 activations and their derivatives, losses, hand-derived gradients of small models;
- 2.2 word tokenization, an add-k smoothed n-gram language model, neural language models
  (LSTM, causal Transformer) for the same perplexity table, the MLM loss over masked positions
  only, NSP / SOP sentence pairs;
- 2.3 optimizer updates (SGD, momentum, AdaGrad, RMSprop, Adam, AdamW) in Keras' exact form,
  learning-rate schedules, weight initializers and activation statistics, bag-of-words features.

Conventions: the gradient of a scalar loss L with respect to parameters theta is
``grad_theta L = dL/dtheta`` (same shape as theta). Optimizer functions take and return
``(theta, state)`` and never modify their inputs.
"""

import math
import re
from collections import Counter

import numpy as np

# --- 2.1 activations ----------------------------------------------------------------------------
_erf = np.vectorize(math.erf, otypes=[float])
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def sigmoid(x):
    """1 / (1 + e^-x), written so that neither branch overflows."""
    x = np.asarray(x, dtype=float)
    z = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def d_sigmoid(x):
    s = sigmoid(x)
    return s * (1.0 - s)


def tanh(x):
    """(e^x - e^-x) / (e^x + e^-x) = 2 sigmoid(2x) - 1: zero-centred, in (-1, 1)."""
    return 2.0 * sigmoid(2.0 * np.asarray(x, dtype=float)) - 1.0


def d_tanh(x):
    return 1.0 - tanh(x) ** 2


def relu(x):
    return np.maximum(np.asarray(x, dtype=float), 0.0)


def d_relu(x):
    """Derivative of ReLU; at exactly 0 we use 0 (what TensorFlow's gradient does)."""
    return (np.asarray(x, dtype=float) > 0).astype(float)


def gelu(x):
    """Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (Keras ``approximate=False``)."""
    x = np.asarray(x, dtype=float)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def d_gelu(x):
    """Phi(x) + x phi(x): the normal CDF plus x times the normal density."""
    x = np.asarray(x, dtype=float)
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)
    return cdf + x * pdf


def gelu_tanh(x):
    """GELU's tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, dtype=float)
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def d_gelu_tanh(x):
    x = np.asarray(x, dtype=float)
    u = SQRT_2_OVER_PI * (x + 0.044715 * x**3)
    du = SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)
    t = np.tanh(u)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * du


def softmax(z, axis=-1):
    """exp(z_i) / sum_j exp(z_j), computed as exp(z_i - max z) / sum exp(z_j - max z).

    Subtracting the maximum changes nothing mathematically (it cancels) but keeps every
    exponent <= 0, so nothing overflows: softmax([1000, 1001]) works.
    """
    z = np.asarray(z, dtype=float)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def naive_softmax(z, axis=-1):
    """The textbook formula without the shift: overflows to nan for large logits."""
    z = np.asarray(z, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(z)
        return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    """log softmax(z) = z - logsumexp(z), stable for any logits."""
    z = np.asarray(z, dtype=float)
    top = np.max(z, axis=axis, keepdims=True)
    return z - top - np.log(np.sum(np.exp(z - top), axis=axis, keepdims=True))


ACTIVATIONS = {
    "sigmoid": (sigmoid, d_sigmoid),
    "tanh": (tanh, d_tanh),
    "relu": (relu, d_relu),
    "gelu": (gelu, d_gelu),
    "gelu_tanh": (gelu_tanh, d_gelu_tanh),
}

# --- 2.1 losses ---------------------------------------------------------------------------------
EPSILON = 1e-7  # keras.backend.epsilon(): how far Keras clips probabilities away from 0 and 1


def mse(y_true, y_pred):
    """Mean squared error over the last axis: mean_i (y_i - yhat_i)^2."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return np.mean((y_true - y_pred) ** 2, axis=-1)


def binary_crossentropy(y_true, p, eps=EPSILON):
    """-[y log p + (1-y) log(1-p)], mean over the last axis; p clipped to [eps, 1-eps] like Keras."""
    y_true = np.asarray(y_true, float)
    p = np.clip(np.asarray(p, float), eps, 1.0 - eps)
    return np.mean(-(y_true * np.log(p) + (1.0 - y_true) * np.log(1.0 - p)), axis=-1)


def binary_crossentropy_from_logits(y_true, z):
    """The same loss from logits z (p = sigmoid(z)) without computing p:

    -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + e^{-|z|}).
    """
    y_true, z = np.asarray(y_true, float), np.asarray(z, float)
    return np.mean(np.maximum(z, 0) - z * y_true + np.log1p(np.exp(-np.abs(z))), axis=-1)


def categorical_crossentropy(y_onehot, p, eps=EPSILON):
    """-sum_c y_c log p_c for probabilities p (rows renormalised and clipped, like Keras)."""
    p = np.asarray(p, float)
    p = p / np.sum(p, axis=-1, keepdims=True)
    p = np.clip(p, eps, 1.0 - eps)
    return -np.sum(np.asarray(y_onehot, float) * np.log(p), axis=-1)


def categorical_crossentropy_from_logits(y_onehot, z):
    return -np.sum(np.asarray(y_onehot, float) * log_softmax(z), axis=-1)


def sparse_categorical_crossentropy(labels, z, from_logits=True):
    """-log p[label]: the same loss with integer labels instead of one-hot rows."""
    labels = np.asarray(labels, int)
    logp = log_softmax(z) if from_logits else np.log(np.clip(np.asarray(z, float), EPSILON,
                                                             1.0 - EPSILON))
    return -np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


# --- 2.1 gradients derived by hand ----------------------------------------------------------------
def linear_mse_grads(X, y, w, b):
    """Loss and gradients of L = mean_i (x_i.w + b - y_i)^2.

    r = Xw + b - y;  dL/dw = (2/n) X^T r;  dL/db = (2/n) sum r.
    """
    X, y, w = np.asarray(X, float), np.asarray(y, float), np.asarray(w, float)
    r = X @ w + b - y
    n = len(y)
    return np.mean(r**2), 2.0 / n * X.T @ r, 2.0 / n * np.sum(r)


def logistic_bce_grads(X, y, w, b):
    """Loss and gradients of L = mean_i BCE(y_i, sigmoid(x_i.w + b)).

    The sigmoid's derivative cancels the log's: dL/dz_i = (sigmoid(z_i) - y_i) / n, so
    dL/dw = X^T (p - y) / n and dL/db = mean(p - y).
    """
    X, y, w = np.asarray(X, float), np.asarray(y, float), np.asarray(w, float)
    z = X @ w + b
    p = sigmoid(z)
    loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    return loss, X.T @ (p - y) / len(y), np.mean(p - y)


def softmax_regression_grads(X, labels, W, b):
    """Loss and gradients of mean sparse CE for logits XW + b: dL/dZ = (softmax(Z) - onehot)/n."""
    X = np.asarray(X, float)
    Z = X @ W + b
    P = softmax(Z)
    n = len(labels)
    loss = np.mean(sparse_categorical_crossentropy(labels, Z))
    P[np.arange(n), labels] -= 1.0
    return loss, X.T @ P / n, P.sum(0) / n


# --- 2.2 language models: tokens and counting ---------------------------------------------------------
PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+|[^\sa-z\d]")


def word_tokenize(text):
    """Lowercased words, numbers and punctuation marks: "It's 1851!" -> ["it's", "1851", "!"]."""
    return _WORD.findall(text.lower())


def build_vocab(token_lists, max_size=5000, min_count=1):
    """[<pad>, <unk>, <eos>, most frequent words...] (ties broken alphabetically: reproducible)."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [PAD, UNK, EOS] + words[: max(max_size - 3, 0)]


def to_stream(token_lists, vocab):
    """One int array: every text's word ids followed by <eos>; unknown words map to <unk>."""
    index = {word: i for i, word in enumerate(vocab)}
    unk, eos = index[UNK], index[EOS]
    out = []
    for tokens in token_lists:
        out.extend(index.get(token, unk) for token in tokens)
        out.append(eos)
    return np.asarray(out, dtype="int32")


class NGramLM:
    """n-gram language model with add-k smoothing, by counting.

    P(w | h) = (C(h, w) + k) / (C(h) + k V), h = the previous n-1 tokens, V = vocabulary size.
    k = 1 is Laplace smoothing; smaller k trusts the counts more. Every word gets a non-zero
    probability, so the perplexity of unseen text is finite.
    """

    def __init__(self, n, vocab_size, k=1.0, boundary=2):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        self.n, self.vocab_size, self.k = int(n), int(vocab_size), float(k)
        self.boundary = boundary  # id used as history before the first token (<eos>)
        self.ngrams = Counter()
        self.contexts = Counter()

    def _padded(self, ids):
        return [self.boundary] * (self.n - 1) + [int(i) for i in ids]

    def fit(self, ids):
        """Count every n-gram and its (n-1)-token context in the id stream ``ids``."""
        padded = self._padded(ids)
        m = self.n - 1
        for t in range(m, len(padded)):
            history = tuple(padded[t - m : t])
            self.ngrams[history + (padded[t],)] += 1
            self.contexts[history] += 1
        return self

    def prob(self, history, word):
        history = tuple(int(h) for h in history)[-(self.n - 1) :] if self.n > 1 else ()
        return (self.ngrams[history + (int(word),)] + self.k) / (
            self.contexts[history] + self.k * self.vocab_size
        )

    def log_probs(self, ids, context=()):
        """Natural-log probability of every token of ``ids`` given the tokens before it.

        ``context``: tokens preceding ``ids`` (e.g. the end of the training stream).
        """
        m = self.n - 1
        history = [self.boundary] * m + [int(c) for c in context]
        padded = (history[len(history) - m :] if m else []) + [int(i) for i in ids]
        k, kv = self.k, self.k * self.vocab_size
        out = np.empty(len(ids))
        for j, t in enumerate(range(m, len(padded))):
            history = tuple(padded[t - m : t])
            out[j] = math.log(
                (self.ngrams[history + (padded[t],)] + k) / (self.contexts[history] + kv)
            )
        return out

    def perplexity(self, ids, context=()):
        """exp(mean negative log-likelihood per token)."""
        return float(np.exp(-np.mean(self.log_probs(ids, context))))


def perplexity(nll):
    """exp of a mean negative log-likelihood in nats (e.g. a cross-entropy loss)."""
    return float(np.exp(np.mean(nll)))


def lm_windows(ids, length):
    """Cut an id stream into (inputs, targets) windows: targets are inputs shifted by one.

    Returns two int arrays of shape (num_windows, length); the tail that does not fill a
    window is dropped.
    """
    ids = np.asarray(ids)
    count = (len(ids) - 1) // length
    x = ids[: count * length].reshape(count, length)
    y = ids[1 : count * length + 1].reshape(count, length)
    return x.astype("int32"), y.astype("int32")


def lstm_lm(vocab_size, embedding_dim=64, hidden_dim=128, name="lstm_lm"):
    """Embedding -> LSTM -> Dense(V): next-token logits (B, S, V). Causal by construction."""
    import keras

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    x = keras.layers.LSTM(hidden_dim, return_sequences=True, name="lstm")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(ids, logits, name=name)


def transformer_lm(vocab_size, sequence_length, hidden_dim=64, num_heads=2, num_layers=2,
                   intermediate_dim=128, dropout=0.0, name="transformer_lm"):
    """GPT-style decoder: token + position embedding -> causal blocks -> Dense(V) logits.

    keras-hub's ``TransformerDecoder`` called without an encoder sequence is a decoder-only
    block; it applies the causal mask itself (position t attends to positions <= t only).
    """
    import keras
    import keras_hub

    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = keras_hub.layers.TokenAndPositionEmbedding(
        vocab_size, sequence_length, hidden_dim, name="embedding")(ids)
    for i in range(num_layers):
        x = keras_hub.layers.TransformerDecoder(
            intermediate_dim, num_heads, dropout=dropout, activation="gelu",
            normalize_first=True, name=f"block_{i}")(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(ids, logits, name=name)


# --- 2.2 pre-training losses -----------------------------------------------------------------------
def masked_lm_loss(logits, labels, weights):
    """MLM loss: cross-entropy averaged over the masked positions only.

    logits (B, P, V) at the P predicted slots, labels (B, P), weights (B, P) = 1 for a real
    masked token and 0 for a padding slot: sum(w * CE) / sum(w).
    """
    ce = sparse_categorical_crossentropy(labels, logits)
    weights = np.asarray(weights, float)
    return float(np.sum(weights * ce) / np.maximum(np.sum(weights), 1.0))


def sentence_pairs(documents, rng, task="nsp"):
    """Sentence-pair examples for BERT's NSP or ALBERT's SOP.

    documents: list of lists of sentences (each sentence any object, e.g. a string or ids).
    NSP: label 1 = B really follows A; label 0 = B is a random sentence from another document
    (topic alone often gives it away, which is why RoBERTa dropped NSP).
    SOP: label 1 = (A, B) in their original order; label 0 = the same two sentences swapped
    (same topic, only the order differs: a harder, coherence-based task).
    Returns a list of (A, B, label), half positive, in random order.
    """
    if task not in ("nsp", "sop"):
        raise ValueError(f"task must be 'nsp' or 'sop', got {task!r}.")
    usable = [d for d in documents if len(d) >= 2]
    if len(usable) < 2:
        raise ValueError("sentence_pairs needs at least two documents with two sentences.")
    pairs = []
    for d, doc in enumerate(usable):
        for i in range(len(doc) - 1):
            a, b = doc[i], doc[i + 1]
            if rng.random() < 0.5:
                pairs.append((a, b, 1))
            elif task == "sop":
                pairs.append((b, a, 0))
            else:
                other = int(rng.integers(len(usable) - 1))
                other += other >= d  # any document but this one
                pairs.append((a, usable[other][int(rng.integers(len(usable[other])))], 0))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def pack_pair(ids_a, ids_b, length, cls=2, sep=3, pad=0):
    """[CLS] A [SEP] B [SEP] [PAD]... plus segment ids (0 for A, 1 for B); the longer of A and B
    loses its last token until the pair fits (B on a tie), as ``tokenizers.pack`` does."""
    a, b = list(ids_a), list(ids_b)
    while len(a) + len(b) > length - 3:
        (a if len(a) > len(b) else b).pop()
    tokens = [cls] + a + [sep] + b + [sep]
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    padding = length - len(tokens)
    return (np.asarray(tokens + [pad] * padding, "int32"),
            np.asarray(segments + [0] * padding, "int32"))


# --- 2.3 optimizers, in Keras' exact form ----------------------------------------------------------
# Each takes (theta, grad, state, hyper-parameters) and returns (new theta, new state); state is
# a dict ({} before the first step). Formulas and defaults follow keras/src/optimizers/*.py.
def sgd_update(theta, grad, state, lr=0.01, momentum=0.0, nesterov=False):
    """theta <- theta - lr g;  with momentum: m <- mu m - lr g;  theta <- theta + m
    (Nesterov: theta <- theta + mu m - lr g with the new m)."""
    if momentum == 0:
        return theta - lr * grad, state
    m = momentum * state.get("m", np.zeros_like(theta)) - lr * grad
    step = momentum * m - lr * grad if nesterov else m
    return theta + step, {"m": m}


def adagrad_update(theta, grad, state, lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    """G <- G + g^2 (G starts at 0.1 in Keras);  theta <- theta - lr g / sqrt(G + eps).

    Every coordinate's step shrinks as its squared gradients add up: good for rare features,
    but the step size only ever decreases.
    """
    acc = state.get("acc", np.full_like(theta, initial_accumulator_value)) + grad**2
    return theta - lr * grad / np.sqrt(acc + epsilon), {"acc": acc}


def rmsprop_update(theta, grad, state, lr=0.001, rho=0.9, epsilon=1e-7):
    """v <- rho v + (1-rho) g^2;  theta <- theta - lr g / sqrt(v + eps) (eps inside the root)."""
    v = rho * state.get("v", np.zeros_like(theta)) + (1 - rho) * grad**2
    return theta - lr * grad / np.sqrt(v + epsilon), {"v": v}


def adam_update(theta, grad, state, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                form="keras"):
    """Adam (Kingma & Ba 2015) with bias correction.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;  t <- t + 1
    paper:  m_hat = m/(1-b1^t), v_hat = v/(1-b2^t);  theta <- theta - lr m_hat / (sqrt(v_hat) + eps)
    keras:  theta <- theta - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1-b2^t) / (1-b1^t)
    The two are the same update except where epsilon sits: Keras' form equals the paper's
    with eps replaced by eps / sqrt(1-b2^t). ``form`` picks one ("keras" matches keras exactly).
    """
    t = state.get("t", 0) + 1
    m = beta_1 * state.get("m", np.zeros_like(theta)) + (1 - beta_1) * grad
    v = beta_2 * state.get("v", np.zeros_like(theta)) + (1 - beta_2) * grad**2
    if form == "keras":
        lr_t = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        new = theta - lr_t * m / (np.sqrt(v) + epsilon)
    elif form == "paper":
        m_hat, v_hat = m / (1 - beta_1**t), v / (1 - beta_2**t)
        new = theta - lr * m_hat / (np.sqrt(v_hat) + epsilon)
    else:
        raise ValueError(f"form must be 'keras' or 'paper', got {form!r}.")
    return new, {"m": m, "v": v, "t": t}


def adamw_update(theta, grad, state, lr=0.001, weight_decay=0.004, **adam_kwargs):
    """AdamW (Loshchilov & Hutter 2019): decay the weights directly, then take the Adam step.

    theta <- theta - lr wd theta (decoupled: not part of the gradient, so Adam's per-coordinate
    scaling does not weaken it), then the Adam update with the gradient taken at the old theta.
    """
    return adam_update(theta - lr * weight_decay * theta, grad, state, lr=lr, **adam_kwargs)


UPDATES = {
    "sgd": sgd_update,
    "momentum": lambda th, g, s, lr=0.01, **kw: sgd_update(th, g, s, lr=lr, momentum=0.9, **kw),
    "adagrad": adagrad_update,
    "rmsprop": rmsprop_update,
    "adam": adam_update,
    "adamw": adamw_update,
}


def keras_optimizer(name, lr):
    """The keras.optimizers object that ``UPDATES[name]`` reproduces."""
    import keras

    return {
        "sgd": lambda: keras.optimizers.SGD(lr),
        "momentum": lambda: keras.optimizers.SGD(lr, momentum=0.9),
        "adagrad": lambda: keras.optimizers.Adagrad(lr),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr),
        "adam": lambda: keras.optimizers.Adam(lr),
        "adamw": lambda: keras.optimizers.AdamW(lr),
    }[name]()


def run_optimizer(update, grad_fn, theta0, steps, **hyper):
    """Trajectory (steps+1, dim) of ``update`` from ``theta0`` with gradients from ``grad_fn``."""
    theta, state = np.array(theta0, dtype=float), {}
    path = [theta.copy()]
    for _ in range(steps):
        theta, state = update(theta, grad_fn(theta), state, **hyper)
        path.append(theta.copy())
    return np.array(path)


def run_keras_optimizer(optimizer, grad_fn, theta0, steps):
    """Same trajectory, with a Keras optimizer updating a float32 ``keras.Variable``."""
    import keras

    variable = keras.Variable(np.asarray(theta0, "float32"))
    path = [variable.numpy().astype(float)]
    for _ in range(steps):
        grad = np.asarray(grad_fn(variable.numpy().astype(float)), "float32")
        optimizer.apply([grad], [variable])
        path.append(variable.numpy().astype(float))
    return np.array(path)


def elongated_bowl(theta, a=1.0, b=20.0):
    """f(x, y) = (a x^2 + b y^2) / 2: a valley 20 times steeper across than along."""
    x, y = theta[..., 0], theta[..., 1]
    return 0.5 * (a * x**2 + b * y**2)


def elongated_bowl_grad(theta, a=1.0, b=20.0):
    return np.array([a * theta[0], b * theta[1]])


def rosenbrock(theta, a=1.0, b=100.0):
    """f(x, y) = (a - x)^2 + b (y - x^2)^2: a curved, flat-bottomed valley; minimum at (a, a^2)."""
    x, y = theta[..., 0], theta[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def rosenbrock_grad(theta, a=1.0, b=100.0):
    x, y = theta
    return np.array([-2 * (a - x) - 4 * b * x * (y - x**2), 2 * b * (y - x**2)])


# --- 2.3 learning-rate schedules ---------------------------------------------------------------------
def constant_lr(step, lr):
    return np.full_like(np.asarray(step, float), lr)


def step_decay(step, lr, drop=0.5, every=100):
    """lr * drop^floor(step / every): halve (say) every ``every`` steps."""
    return lr * drop ** np.floor(np.asarray(step, float) / every)


def exponential_decay(step, lr, decay_rate=0.96, decay_steps=100):
    """lr * decay_rate^(step / decay_steps) (keras ExponentialDecay, staircase=False)."""
    return lr * decay_rate ** (np.asarray(step, float) / decay_steps)


def cosine_decay(step, lr, decay_steps, alpha=0.0):
    """Half a cosine from lr down to alpha*lr over decay_steps, then flat (keras CosineDecay)."""
    progress = np.minimum(np.asarray(step, float), decay_steps) / decay_steps
    return lr * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * progress)) + alpha)


def warmup_linear_decay(step, peak, warmup_steps, total_steps):
    """0 -> peak linearly over warmup_steps, then linearly back to 0 at total_steps (BERT)."""
    step = np.asarray(step, float)
    warm = peak * step / max(warmup_steps, 1)
    decay = peak * np.maximum(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))
    return np.where(step < warmup_steps, warm, decay)


def warmup_cosine(step, peak, warmup_steps, decay_steps, initial=0.0):
    """Linear warmup from ``initial`` to peak, then a cosine to 0 over decay_steps."""
    step = np.asarray(step, float)
    warm = initial + (peak - initial) * step / max(warmup_steps, 1)
    return np.where(step < warmup_steps, warm, cosine_decay(step - warmup_steps, peak,
                                                             decay_steps))


# --- 2.3 initialization ------------------------------------------------------------------------------
def init_std(name, fan_in, fan_out):
    """Standard deviation of each initializer's weights for a (fan_in, fan_out) kernel.

    Glorot/Xavier keeps the variance of activations and of gradients about constant for
    tanh-like units: Var = 2 / (fan_in + fan_out). He keeps it for ReLU, which zeroes half the
    inputs: Var = 2 / fan_in. A fixed N(0, 1) ignores the width entirely.
    """
    table = {
        "normal(1.0)": 1.0,
        "normal(0.01)": 0.01,
        "glorot": math.sqrt(2.0 / (fan_in + fan_out)),
        "he": math.sqrt(2.0 / fan_in),
    }
    if name not in table:
        raise ValueError(f"Unknown initializer {name!r}: choose one of {sorted(table)}.")
    return table[name]


def activation_stats(init, activation, depth=20, width=256, samples=512, seed=0):
    """Push N(0, 1) inputs through ``depth`` Dense layers (no bias) and record, per layer,
    the standard deviation of the activations and the fraction that are saturated (|tanh| >
    0.99, |sigmoid - 0.5| > 0.49) or dead (relu == 0 for every sample)."""
    rng = np.random.default_rng(seed)
    f = ACTIVATIONS[activation][0]
    x = rng.standard_normal((samples, width))
    stds, extreme = [], []
    for _ in range(depth):
        W = rng.standard_normal((width, width)) * init_std(init, width, width)
        x = f(x @ W)
        stds.append(float(np.std(x)))
        if activation == "tanh":
            extreme.append(float(np.mean(np.abs(x) > 0.99)))
        elif activation == "sigmoid":
            extreme.append(float(np.mean(np.abs(x - 0.5) > 0.49)))
        else:
            extreme.append(float(np.mean(np.all(x <= 0, axis=0))))
    return np.array(stds), np.array(extreme)


# --- features for small real models ------------------------------------------------------------------
def bag_of_words(token_lists, vocab, binary=True):
    """(n_texts, len(vocab)) float32 matrix of word presence (or counts); unknown words dropped."""
    index = {word: i for i, word in enumerate(vocab)}
    out = np.zeros((len(token_lists), len(vocab)), dtype="float32")
    for row, tokens in enumerate(token_lists):
        for token in tokens:
            j = index.get(token)
            if j is not None:
                out[row, j] = 1.0 if binary else out[row, j] + 1.0
    return out
