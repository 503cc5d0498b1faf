"""The LSTM baseline: a raw-string classifier in one Keras 3 model.

The ``TextVectorization`` layer is part of the model, so the saved ``.keras`` file takes raw strings
and carries its own vocabulary: no separate tokenizer file can drift out of sync.

raw strings (B,) -> TextVectorization -> ids (B, S) -> Embedding -> BiLSTM -> Dense -> logits (B, C)
"""

import keras


def build_lstm_classifier(
    train_texts,
    num_classes=2,
    max_tokens=20000,
    sequence_length=64,
    embedding_dim=64,
    hidden_dim=64,
    dropout=0.3,
    split="whitespace",
):
    """An end-to-end text classifier; the vocabulary is adapted on ``train_texts`` only.

    split: "whitespace" for English, "character" for Chinese (no spaces between words).
    Output: logits (B, num_classes).
    """
    train_texts = list(train_texts)
    if not train_texts:
        raise ValueError("build_lstm_classifier got no training texts to build a vocabulary.")
    vectorize = keras.layers.TextVectorization(
        max_tokens=max_tokens,
        output_sequence_length=sequence_length,
        split=split,
        standardize="lower_and_strip_punctuation",
        name="vectorize",
    )
    vectorize.adapt(train_texts, batch_size=1024)
    texts = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorize(texts)
    x = keras.layers.Embedding(
        vectorize.vocabulary_size(), embedding_dim, mask_zero=True, name="embedding"
    )(ids)
    x = keras.layers.Bidirectional(keras.layers.LSTM(hidden_dim), name="bilstm")(x)
    x = keras.layers.Dropout(dropout)(x)
    logits = keras.layers.Dense(num_classes, name="head")(x)
    return keras.Model(texts, logits, name="lstm_baseline")
