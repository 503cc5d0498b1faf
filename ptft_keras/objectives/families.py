"""The seven model families of chapter 1.2, each built small and pre-trained with its own objective.

    tokenizer = train_tokenizer("albert", texts)          # the tokenizer type the family uses
    family = build_family("albert", tokenizer)            # backbone + pre-training model, compiled
    data = family.make_data(texts)                        # batches for family.model.fit
    result = pretrain_family(family, texts, epochs=1)     # loss before/after, params, time
    family_table([result, ...])                           # the comparison table (a DataFrame)

Backbones come from keras-hub (random weights, built from a config: no download). What keras-hub
lacks is in ``objectives``: NSP, SOP, span corruption, permutation LM, and the data for each.

Tokenizers are trained in seconds with Hugging Face ``tokenizers`` (WordPiece, byte-level BPE)
or ``sentencepiece`` (unigram), then loaded into the keras-hub tokenizer class of the family,
with the special tokens that class looks up by name.
"""

import dataclasses
import io
import json
import time
from typing import Callable

import keras
import keras_hub
import numpy as np

from ptft_keras import tokenizers
from ptft_keras.data import datasets
from ptft_keras.objectives import (
    causal_lm,
    mlm,
    permutation_lm,
    sentence_pairs,
    spans,
)

FAMILIES = ("gpt2", "bert", "roberta", "albert", "xlnet", "t5", "deberta")

INFO = {
    "gpt2": dict(
        architecture="decoder", objective="causal LM (next token)",
        attention="causal self-attention, learned absolute positions",
        tokenizer="byte-level BPE"),
    "bert": dict(
        architecture="encoder", objective="MLM (static masking) + NSP",
        attention="bidirectional self-attention, learned absolute positions",
        tokenizer="WordPiece"),
    "roberta": dict(
        architecture="encoder", objective="MLM (dynamic masking), no NSP",
        attention="bidirectional self-attention, learned absolute positions",
        tokenizer="byte-level BPE"),
    "albert": dict(
        architecture="encoder", objective="MLM + SOP",
        attention="bidirectional self-attention, one layer shared by all depths; "
                  "factorized embedding",
        tokenizer="SentencePiece unigram"),
    "xlnet": dict(
        architecture="encoder, two streams", objective="permutation LM (last 1/6 of the order)",
        attention="two-stream relative attention (content: itself + earlier in the order; "
                  "query: earlier only)",
        tokenizer="SentencePiece unigram"),
    "t5": dict(
        architecture="encoder-decoder", objective="span corruption (sentinels, 15%, mean span 3)",
        attention="relative position bias; causal decoder + cross-attention",
        tokenizer="SentencePiece unigram"),
    "deberta": dict(
        architecture="encoder", objective="MLM (dynamic masking)",
        attention="disentangled attention (content and relative position separately)",
        tokenizer="SentencePiece unigram"),
}

SIZES = {
    "tiny": dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128,
                 embedding_dim=16, sequence_length=64, learning_rate=2e-3),
    "small": dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024,
                  embedding_dim=64, sequence_length=128, learning_rate=5e-4),
}

T5_SENTINELS = 32  # <extra_id_0> ... <extra_id_31>; T5 itself has 100, spans per example are few


# --- tokenizers -----------------------------------------------------------------------------------
def _train_byte_level_bpe(texts, vocabulary_size, special_tokens):
    """HF byte-level BPE -> (vocabulary dict, merges list), as keras-hub's BPE tokenizers read."""
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(
        texts, vocab_size=vocabulary_size, min_frequency=2,
        special_tokens=list(special_tokens), show_progress=False,
    )
    model = json.loads(trainer.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    return model["vocab"], merges


def _train_sentencepiece(texts, vocabulary_size, **pieces):
    """A sentencepiece unigram model, returned as the serialized proto (bytes)."""
    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocabulary_size,
        model_type="unigram", hard_vocab_limit=False, minloglevel=2, **pieces,
    )
    return proto.getvalue()


def train_tokenizer(name, texts, vocabulary_size=2000):
    """Train the tokenizer of family ``name`` on ``texts``; returns a keras-hub tokenizer.

    Special tokens and their ids (the keras-hub class looks the names up):
    bert WordPiece [PAD]=0 [UNK] [CLS] [SEP] [MASK]; gpt2 BPE <|endoftext|>=0 (keras-hub's
    GPT-2 pads with id 0); roberta BPE <s>=0 <pad> </s> <unk> <mask>; albert SentencePiece
    <pad>=0 <unk> [CLS] [SEP] [MASK]; deberta [PAD]=0 [UNK] [CLS] [SEP] [MASK]; t5 <pad>=0
    </s> <unk> <extra_id_0..31>; xlnet (no keras-hub class: a plain SentencePieceTokenizer)
    <unk>=0 <s> </s> <cls> <sep> <pad> <mask>, XLNet's own layout.
    """
    models = keras_hub.models
    if name == "bert":
        vocab = tokenizers.train_wordpiece(texts, vocab_size=vocabulary_size)
        return models.BertTokenizer(vocabulary=vocab, lowercase=True, strip_accents=True)
    if name == "gpt2":
        return models.GPT2Tokenizer(*_train_byte_level_bpe(texts, vocabulary_size,
                                                           ["<|endoftext|>"]))
    if name == "roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        return models.RobertaTokenizer(*_train_byte_level_bpe(texts, vocabulary_size, specials))
    if name == "albert":
        return models.AlbertTokenizer(proto=_train_sentencepiece(
            texts, vocabulary_size, pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>",
            unk_piece="<unk>", bos_piece="[CLS]", eos_piece="[SEP]",
            user_defined_symbols=["[MASK]"]))
    if name == "deberta":
        return models.DebertaV3Tokenizer(proto=_train_sentencepiece(
            texts, vocabulary_size, pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="[PAD]",
            unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]",
            user_defined_symbols=["[MASK]"]))
    if name == "t5":
        sentinels = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)]
        return models.T5Tokenizer(proto=_train_sentencepiece(
            texts, vocabulary_size, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            user_defined_symbols=sentinels))
    if name == "xlnet":
        return keras_hub.tokenizers.SentencePieceTokenizer(proto=_train_sentencepiece(
            texts, vocabulary_size, unk_id=0, bos_id=1, eos_id=2, pad_id=5, unk_piece="<unk>",
            bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>",
            control_symbols=["<cls>", "<sep>"], user_defined_symbols=["<mask>"]))
    raise ValueError(f"Unknown family {name!r}: one of {', '.join(FAMILIES)}.")


def _token_lists(tokenizer, texts):
    """Token ids of each text as Python lists (tokenizers return ragged tensors)."""
    ragged = tokenizer(list(texts))
    return ragged.to_list() if hasattr(ragged, "to_list") else [list(r) for r in ragged]


# --- families -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Family:
    """One family, built: ``model.fit(make_data(texts))`` runs its pre-training objective."""

    name: str
    tokenizer: object
    backbone: keras.Model
    model: keras.Model
    make_data: Callable  # make_data(texts, batch_size=16, seed=0, dynamic=None) -> PyDataset
    sequence_length: int
    size: str

    @property
    def info(self):
        return INFO[self.name]


def _ids(tokenizer, token):
    return int(tokenizer.token_to_id(token))


def _mlm_data(tokenizer, sequence_length, start, end, pad, mask, dynamic_default):
    """Contiguous [start] chunk [end] blocks (RoBERTa's FULL-SENTENCES packing: no padding),
    masked 80/10/10 by ``mlm.MLMDataset``."""
    vocabulary_size = tokenizer.vocabulary_size()

    def make_data(texts, batch_size=16, seed=0, dynamic=None):
        blocks = causal_lm.chunk_token_stream(_token_lists(tokenizer, texts), sequence_length - 2)
        ids = np.concatenate(
            [np.full((len(blocks), 1), start), blocks, np.full((len(blocks), 1), end)], 1
        ).astype("int32")
        return mlm.MLMDataset(
            ids, vocabulary_size, batch_size=batch_size, seed=seed,
            dynamic=dynamic_default if dynamic is None else dynamic,
            extra_inputs={"padding_mask": lambda t: (t != pad).astype("int32")},
            mask_token_id=mask, special_ids=(pad, start, end), random_start=5,
        )

    return make_data


def _pair_data(tokenizer, task, sequence_length, cls, sep, pad, mask, dynamic_default):
    """Documents = texts, split into sentences and tokenized once; pairs and masks per epoch."""
    vocabulary_size = tokenizer.vocabulary_size()

    def make_data(texts, batch_size=16, seed=0, dynamic=None):
        sentences = [sentence_pairs.split_sentences(text) for text in texts]
        flat = _token_lists(tokenizer, [s for doc in sentences for s in doc])
        documents, start = [], 0
        for doc in sentences:
            documents.append([ids for ids in flat[start : start + len(doc)] if len(ids)])
            start += len(doc)

        def make_epoch(rng):
            return sentence_pairs.sentence_pair_arrays(
                documents, rng, task, sequence_length, vocabulary_size, cls, sep, pad, mask
            )

        return datasets.EpochDataset(
            make_epoch, batch_size, dynamic_default if dynamic is None else dynamic, seed
        )

    return make_data


def _stream_data(tokenizer, block_length, make_arrays, separator=None, dynamic_default=True):
    """Concatenated token stream cut into blocks; ``make_arrays(blocks, rng)`` per epoch."""

    def make_data(texts, batch_size=16, seed=0, dynamic=None):
        blocks = causal_lm.chunk_token_stream(_token_lists(tokenizer, texts), block_length,
                                               separator)
        return datasets.EpochDataset(
            lambda rng: make_arrays(blocks, rng), batch_size,
            dynamic_default if dynamic is None else dynamic, seed,
        )

    return make_data


def build_family(name, tokenizer, size="tiny", sequence_length=None, learning_rate=None,
                 dropout=0.0):
    """Build family ``name`` at ``size`` ("tiny", "small" or a dict of ``SIZES`` keys).

    Returns a ``Family`` whose ``model`` is compiled for the family's own objective and whose
    ``make_data(texts)`` produces its batches. ``dropout`` defaults to 0: the course's runs
    are far too short to overfit, and dropout slows how fast a few steps lower the loss.
    """
    if name not in FAMILIES:
        raise ValueError(f"Unknown family {name!r}: one of {', '.join(FAMILIES)}.")
    if isinstance(size, dict):  # a custom size: any keys of SIZES["tiny"] overridden
        cfg, size = {**SIZES["tiny"], **size}, "custom"
    elif size in SIZES:
        cfg = dict(SIZES[size])
    else:
        raise ValueError(f"Unknown size {size!r}: one of {', '.join(SIZES)} or a dict.")
    length = sequence_length or cfg.pop("sequence_length")
    lr = learning_rate or cfg.pop("learning_rate")
    embedding_dim = cfg.pop("embedding_dim")
    cfg = {key: cfg[key] for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")}
    vocabulary_size = tokenizer.vocabulary_size()
    common = dict(vocabulary_size=vocabulary_size, dropout=dropout, **cfg)
    models = keras_hub.models

    if name == "gpt2":
        backbone = models.GPT2Backbone(max_sequence_length=length, **common)
        model = mlm.compile_lm(causal_lm.CausalLMPretrainer(backbone), lr)
        make_data = _stream_data(tokenizer, length + 1,
                                 lambda blocks, rng: causal_lm.causal_lm_arrays(blocks),
                                 separator=tokenizer.end_token_id, dynamic_default=False)
    elif name in ("bert", "albert"):
        if name == "bert":
            backbone = models.BertBackbone(max_sequence_length=length, **common)
        else:  # one shared layer (num_groups=1) applied num_layers times; E < H factorization
            backbone = models.AlbertBackbone(embedding_dim=embedding_dim,
                                             max_sequence_length=length, **common)
        task = "nsp" if name == "bert" else "sop"
        model = sentence_pairs.compile_sentence_pair(
            sentence_pairs.SentencePairPretrainer(backbone, task=task, dropout=dropout), lr)
        make_data = _pair_data(tokenizer, task, length, tokenizer.cls_token_id,
                               tokenizer.sep_token_id, tokenizer.pad_token_id,
                               tokenizer.mask_token_id, dynamic_default=False)
    elif name in ("roberta", "deberta"):
        if name == "roberta":
            backbone = models.RobertaBackbone(max_sequence_length=length, **common)
            start, end = tokenizer.start_token_id, tokenizer.end_token_id
        else:
            backbone = models.DebertaV3Backbone(max_sequence_length=length,
                                                bucket_size=length // 2, **common)
            start, end = tokenizer.cls_token_id, tokenizer.sep_token_id
        model = mlm.compile_mlm(mlm.MaskedLMPretrainer(backbone), lr)
        make_data = _mlm_data(tokenizer, length, start, end, tokenizer.pad_token_id,
                              tokenizer.mask_token_id, dynamic_default=True)
    elif name == "xlnet":
        backbone = models.XLNetBackbone(**common)
        model = mlm.compile_lm(permutation_lm.PermutationLMPretrainer(backbone), lr)
        pad, num_predict = _ids(tokenizer, "<pad>"), max(1, length // 6)
        make_data = _stream_data(
            tokenizer, length,
            lambda blocks, rng: permutation_lm.permutation_lm_arrays(
                blocks, blocks != pad, rng, num_predict),
            separator=_ids(tokenizer, "</s>"))
    else:  # t5
        backbone = models.T5Backbone(key_value_dim=cfg["hidden_dim"] // cfg["num_heads"],
                                     **common)
        model = mlm.compile_lm(spans.Seq2SeqPretrainer(backbone), lr)
        sentinels = [_ids(tokenizer, f"<extra_id_{i}>") for i in range(T5_SENTINELS)]
        eos, pad = tokenizer.end_token_id, tokenizer.pad_token_id
        make_data = _stream_data(
            tokenizer, length,
            lambda blocks, rng: spans.span_corruption_arrays(blocks, rng, sentinels, eos,
                                                                  pad),
            separator=eos)
    return Family(name, tokenizer, backbone, model, make_data, length, size)


# --- fine-tuning ----------------------------------------------------------------------------------
def classification_inputs(family, texts):
    """Texts -> the inputs of ``family.backbone`` for a classifier: dict of int32 (N, S).

    Each text is tokenized with the family's tokenizer, wrapped in the special tokens the
    family's own classifiers use (BERT, ALBERT, DeBERTa: [CLS] x [SEP]; RoBERTa: <s> x </s>;
    GPT-2: x <|endoftext|>; XLNet: x <sep> <cls>, its classification token comes last;
    T5: x </s>), cut to the family's sequence length and padded (padding mask 0 there).
    T5's decoder gets one start token (<pad>, as in T5): the classifier pools the encoder.
    Use with ``finetune.build_classifier(family.backbone, num_classes, pooling="mean")``.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one text to classify.")
    tok = family.tokenizer
    if family.name in ("bert", "albert", "deberta"):
        start, end, pad = [tok.cls_token_id], [tok.sep_token_id], tok.pad_token_id
    elif family.name == "roberta":
        start, end, pad = [tok.start_token_id], [tok.end_token_id], tok.pad_token_id
    elif family.name == "gpt2":
        start, end, pad = [], [tok.end_token_id], 0
    elif family.name == "xlnet":
        start, end, pad = [], [_ids(tok, "<sep>"), _ids(tok, "<cls>")], _ids(tok, "<pad>")
    else:  # t5
        start, end, pad = [], [tok.end_token_id], tok.pad_token_id
    length = family.sequence_length
    body = length - len(start) - len(end)
    ids = np.full((len(texts), length), pad, dtype="int32")
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(_token_lists(tok, texts)):
        seq = start + list(tokens)[:body] + end
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    if family.name == "t5":
        return {"encoder_token_ids": ids, "encoder_padding_mask": mask,
                "decoder_token_ids": np.full((len(texts), 1), pad, "int32"),
                "decoder_padding_mask": np.ones((len(texts), 1), "int32")}
    inputs = {"token_ids": ids, "padding_mask": mask}
    if "segment_ids" in family.backbone.input:
        inputs["segment_ids"] = np.zeros_like(ids)
    return inputs


# --- running and comparing ------------------------------------------------------------------------
def _built_param_count(model, batch):
    """Parameters of ``model``, building it on ``batch`` first (x of one (x, y, w) batch)."""
    if not model.built:
        model(batch, training=False)
    return int(model.count_params())


def pretrain_family(family, texts, epochs=1, batch_size=16, eval_texts=None, seed=0,
                    verbose=0):
    """Pre-train ``family`` on ``texts`` with its objective; returns a result dict.

    Loss before/after are measured on the same fixed batches (``eval_texts``, default the
    training texts, built with static masking so both numbers see identical inputs).
    """
    data = family.make_data(texts, batch_size=batch_size, seed=seed)
    evaluation = family.make_data(eval_texts or texts, batch_size=batch_size, seed=seed + 1,
                                  dynamic=False)
    params = _built_param_count(family.model, evaluation[0][0])
    before = family.model.evaluate(evaluation, verbose=0, return_dict=True)["loss"]
    start = time.perf_counter()
    family.model.fit(data, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    after = family.model.evaluate(evaluation, verbose=0, return_dict=True)["loss"]
    return dict(
        family=family.name, **family.info, params=params,
        backbone_params=int(family.backbone.count_params()),
        loss_before=float(before), loss_after=float(after),
        train_seconds=seconds, steps=len(data) * epochs,
    )


def family_table(results):
    """A DataFrame, one row per family: architecture, objective, attention, tokenizer,
    parameters (pre-training model and backbone alone), loss before and after."""
    import pandas as pd

    columns = ["family", "architecture", "objective", "attention", "tokenizer", "params",
               "backbone_params", "loss_before", "loss_after"]
    rows = list(results.values()) if isinstance(results, dict) else list(results)
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)
    return frame.set_index("family")
