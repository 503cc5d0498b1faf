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

Each family is one ``FamilySpec`` in ``FAMILIES`` (name -> spec): its tokenizer trainer, its
keras-hub backbone class and the extra config that class takes, its pre-trainer, its data, the
special tokens those use and how a classifier's input is wrapped. The functions below only read
the spec; adding a family is adding an entry.
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

SIZES = {
    "tiny": dict(num_layers=2, hidden_dim=64, num_heads=2, intermediate_dim=128,
                 embedding_dim=16, sequence_length=64, learning_rate=2e-3),
    "small": dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024,
                  embedding_dim=64, sequence_length=128, learning_rate=5e-4),
}

T5_SENTINELS = 32  # <extra_id_0> ... <extra_id_31>; T5 itself has 100, spans per example are few


# --- tokenizer trainers: (texts, vocabulary_size) -> a keras-hub tokenizer ------------------------
def _wordpiece(tokenizer_class):
    """WordPiece ([PAD]=0 [UNK] [CLS] [SEP] [MASK], lowercased) into ``tokenizer_class``."""
    def train(texts, vocabulary_size):
        vocab = tokenizers.train_wordpiece(texts, vocab_size=vocabulary_size)
        return tokenizer_class(vocabulary=vocab, lowercase=True, strip_accents=True)
    return train


def _byte_level_bpe(tokenizer_class, *special_tokens):
    """HF byte-level BPE, ``special_tokens`` at ids 0, 1, ..., into ``tokenizer_class`` (which
    reads a vocabulary dict and a merges list)."""
    def train(texts, vocabulary_size):
        from tokenizers import ByteLevelBPETokenizer

        trainer = ByteLevelBPETokenizer()
        trainer.train_from_iterator(
            texts, vocab_size=vocabulary_size, min_frequency=2,
            special_tokens=list(special_tokens), show_progress=False,
        )
        model = json.loads(trainer.to_str())["model"]
        merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
        return tokenizer_class(model["vocab"], merges)
    return train


def _unigram(tokenizer_class, **pieces):
    """A sentencepiece unigram model (special pieces and their ids: ``pieces``), its serialized
    proto loaded into ``tokenizer_class``."""
    def train(texts, vocabulary_size):
        import sentencepiece

        proto = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=proto, vocab_size=vocabulary_size,
            model_type="unigram", hard_vocab_limit=False, minloglevel=2, **pieces,
        )
        return tokenizer_class(proto=proto.getvalue())
    return train


# --- pre-trainers: (backbone, learning_rate, dropout) -> the compiled pre-training model ----------
def _language_model(pretrainer_class):
    """A pre-trainer that predicts tokens only (causal, permutation, span LM), compiled."""
    return lambda backbone, learning_rate, dropout: mlm.compile_lm(pretrainer_class(backbone),
                                                                   learning_rate)


def _masked_lm(backbone, learning_rate, dropout):
    return mlm.compile_mlm(mlm.MaskedLMPretrainer(backbone), learning_rate)


def _sentence_pair(task):
    """MLM + a sentence-pair head (``task``: "nsp" or "sop"), compiled."""
    def build(backbone, learning_rate, dropout):
        pretrainer = sentence_pairs.SentencePairPretrainer(backbone, task=task, dropout=dropout)
        return sentence_pairs.compile_sentence_pair(pretrainer, learning_rate)
    return build


# --- data: (tokenizer, sequence_length, ids) -> make_data(texts, batch_size=16, seed=0,
# dynamic=None); ``ids`` maps the roles of the spec's ``tokens`` ("start", "pad", ...) to ids.
def _token_lists(tokenizer, texts):
    """Token ids of each text as Python lists (tokenizers return ragged tensors)."""
    ragged = tokenizer(list(texts))
    return ragged.to_list() if hasattr(ragged, "to_list") else [list(r) for r in ragged]


def _masked_lm_batches(tokenizer, sequence_length, ids):
    """RoBERTa, DeBERTa: contiguous [start] chunk [end] blocks (RoBERTa's FULL-SENTENCES
    packing: no padding), masked 80/10/10 by ``mlm.MLMDataset``, new masks every epoch."""
    vocabulary_size = tokenizer.vocabulary_size()
    start, end, pad, mask = ids["start"], ids["end"], ids["pad"], ids["mask"]

    def make_data(texts, batch_size=16, seed=0, dynamic=None):
        blocks = causal_lm.chunk_token_stream(_token_lists(tokenizer, texts), sequence_length - 2)
        packed = np.concatenate(
            [np.full((len(blocks), 1), start), blocks, np.full((len(blocks), 1), end)], 1
        ).astype("int32")
        return mlm.MLMDataset(
            packed, vocabulary_size, batch_size=batch_size, seed=seed,
            dynamic=True if dynamic is None else dynamic,
            extra_inputs={"padding_mask": lambda t: (t != pad).astype("int32")},
            mask_token_id=mask, special_ids=(pad, start, end), random_start=5,
        )

    return make_data


def _sentence_pair_batches(task):
    """BERT (NSP), ALBERT (SOP): documents = texts, split into sentences and tokenized once;
    pairs and masks made per epoch, the same each epoch unless ``dynamic``."""

    def make(tokenizer, sequence_length, ids):
        vocabulary_size = tokenizer.vocabulary_size()
        cls, sep, pad, mask = ids["start"], ids["end"], ids["pad"], ids["mask"]

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
                make_epoch, batch_size, False if dynamic is None else dynamic, seed
            )

        return make_data

    return make


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


def _causal_lm_batches(tokenizer, length, ids):
    """GPT-2: blocks of length + 1 (inputs and targets shifted by one), the same each epoch."""
    return _stream_data(tokenizer, length + 1,
                        lambda blocks, rng: causal_lm.causal_lm_arrays(blocks),
                        separator=ids["end"], dynamic_default=False)


def _permutation_lm_batches(tokenizer, length, ids):
    """XLNet: stream blocks; a new factorization order each epoch, the last 1/6 predicted."""
    pad, num_predict = ids["pad"], max(1, length // 6)
    return _stream_data(
        tokenizer, length,
        lambda blocks, rng: permutation_lm.permutation_lm_arrays(blocks, blocks != pad, rng,
                                                                 num_predict),
        separator=ids["end"])


def _span_corruption_batches(tokenizer, length, ids):
    """T5: stream blocks; new spans each epoch, replaced by the <extra_id_i> sentinels."""
    sentinels = [_ids(tokenizer, f"<extra_id_{i}>") for i in range(T5_SENTINELS)]
    eos, pad = ids["end"], ids["pad"]
    return _stream_data(
        tokenizer, length,
        lambda blocks, rng: spans.span_corruption_arrays(blocks, rng, sentinels, eos, pad),
        separator=eos)


# --- classification inputs: (ids, mask, pad, backbone) -> the backbone's input dict --------------
def _encoder_inputs(ids, mask, pad, backbone):
    inputs = {"token_ids": ids, "padding_mask": mask}
    if "segment_ids" in backbone.input:
        inputs["segment_ids"] = np.zeros_like(ids)
    return inputs


def _encoder_decoder_inputs(ids, mask, pad, backbone):
    """T5: the text into the encoder; the decoder gets one start token (<pad>, as in T5)."""
    return {"encoder_token_ids": ids, "encoder_padding_mask": mask,
            "decoder_token_ids": np.full((len(ids), 1), pad, "int32"),
            "decoder_padding_mask": np.ones((len(ids), 1), "int32")}


# --- the registry ---------------------------------------------------------------------------------
def _max_positions(dims, length):
    """Extra backbone config: learned positions up to ``length`` (most families)."""
    return dict(max_sequence_length=length)


@dataclasses.dataclass(frozen=True)
class FamilySpec:
    """Everything that makes one family what it is; ``build_family`` only reads it.

    tokens: role -> special token (or a fixed id). The data makers and classifiers use "start"
    and "end" (each text's first and last token, or the pair's [CLS] and [SEP]), "pad",
    "mask", and any others the family's own functions look up (XLNet: "cls", "sep").
    backbone_config(dims, sequence_length): the config the backbone takes besides
    vocabulary_size, dropout, num_layers, hidden_dim, num_heads, intermediate_dim; ``dims`` is
    the size dict (those four and embedding_dim).
    classification_wrap: (roles before the text, roles after it) for a classifier's input.
    """

    name: str
    info: dict  # architecture, objective, attention, tokenizer: the comparison table's columns
    train_tokenizer: Callable  # (texts, vocabulary_size) -> keras-hub tokenizer
    backbone: type  # the keras-hub backbone class
    pretrainer: Callable  # (backbone, learning_rate, dropout) -> compiled pre-training model
    make_data: Callable  # (tokenizer, sequence_length, ids) -> make_data(texts, ...)
    tokens: dict
    backbone_config: Callable = _max_positions
    classification_wrap: tuple = (("start",), ("end",))
    classification_inputs: Callable = _encoder_inputs  # (ids, mask, pad, backbone) -> dict

    def token_ids(self, tokenizer):
        """role -> id of the spec's special tokens in ``tokenizer`` (an int is an id already)."""
        return {role: token if isinstance(token, int) else _ids(tokenizer, token)
                for role, token in self.tokens.items()}


_BERT_TOKENS = dict(start="[CLS]", end="[SEP]", pad="[PAD]", mask="[MASK]")
_models = keras_hub.models

FAMILIES = {spec.name: spec for spec in (
    FamilySpec(
        "gpt2",
        dict(architecture="decoder", objective="causal LM (next token)",
             attention="causal self-attention, learned absolute positions",
             tokenizer="byte-level BPE"),
        train_tokenizer=_byte_level_bpe(_models.GPT2Tokenizer, "<|endoftext|>"),
        backbone=_models.GPT2Backbone,
        pretrainer=_language_model(causal_lm.CausalLMPretrainer),
        make_data=_causal_lm_batches,
        tokens=dict(end="<|endoftext|>", pad=0),  # keras-hub's GPT-2 pads with id 0
        classification_wrap=((), ("end",)),
    ),
    FamilySpec(
        "bert",
        dict(architecture="encoder", objective="MLM (static masking) + NSP",
             attention="bidirectional self-attention, learned absolute positions",
             tokenizer="WordPiece"),
        train_tokenizer=_wordpiece(_models.BertTokenizer),
        backbone=_models.BertBackbone,
        pretrainer=_sentence_pair("nsp"),
        make_data=_sentence_pair_batches("nsp"),
        tokens=dict(_BERT_TOKENS),
    ),
    FamilySpec(
        "roberta",
        dict(architecture="encoder", objective="MLM (dynamic masking), no NSP",
             attention="bidirectional self-attention, learned absolute positions",
             tokenizer="byte-level BPE"),
        train_tokenizer=_byte_level_bpe(_models.RobertaTokenizer,
                                        "<s>", "<pad>", "</s>", "<unk>", "<mask>"),
        backbone=_models.RobertaBackbone,
        pretrainer=_masked_lm,
        make_data=_masked_lm_batches,
        tokens=dict(start="<s>", end="</s>", pad="<pad>", mask="<mask>"),
    ),
    FamilySpec(
        "albert",
        dict(architecture="encoder", objective="MLM + SOP",
             attention="bidirectional self-attention, one layer shared by all depths; "
                       "factorized embedding",
             tokenizer="SentencePiece unigram"),
        train_tokenizer=_unigram(
            _models.AlbertTokenizer, pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>",
            unk_piece="<unk>", bos_piece="[CLS]", eos_piece="[SEP]",
            user_defined_symbols=["[MASK]"]),
        # one shared layer (num_groups=1) applied num_layers times; E < H factorization
        backbone=_models.AlbertBackbone,
        backbone_config=lambda dims, length: dict(embedding_dim=dims["embedding_dim"],
                                                  max_sequence_length=length),
        pretrainer=_sentence_pair("sop"),
        make_data=_sentence_pair_batches("sop"),
        tokens={**_BERT_TOKENS, "pad": "<pad>"},
    ),
    FamilySpec(
        "xlnet",
        dict(architecture="encoder, two streams",
             objective="permutation LM (last 1/6 of the order)",
             attention="two-stream relative attention (content: itself + earlier in the order; "
                       "query: earlier only)",
             tokenizer="SentencePiece unigram"),
        # no keras-hub XLNet tokenizer: a plain SentencePieceTokenizer, XLNet's own layout
        train_tokenizer=_unigram(
            keras_hub.tokenizers.SentencePieceTokenizer, unk_id=0, bos_id=1, eos_id=2, pad_id=5,
            unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", pad_piece="<pad>",
            control_symbols=["<cls>", "<sep>"], user_defined_symbols=["<mask>"]),
        backbone=_models.XLNetBackbone,
        backbone_config=lambda dims, length: {},  # relative positions: no maximum length
        pretrainer=_language_model(permutation_lm.PermutationLMPretrainer),
        make_data=_permutation_lm_batches,
        tokens=dict(end="</s>", pad="<pad>", cls="<cls>", sep="<sep>"),
        classification_wrap=((), ("sep", "cls")),  # its classification token comes last
    ),
    FamilySpec(
        "t5",
        dict(architecture="encoder-decoder",
             objective="span corruption (sentinels, 15%, mean span 3)",
             attention="relative position bias; causal decoder + cross-attention",
             tokenizer="SentencePiece unigram"),
        train_tokenizer=_unigram(
            _models.T5Tokenizer, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            user_defined_symbols=[f"<extra_id_{i}>" for i in range(T5_SENTINELS)]),
        backbone=_models.T5Backbone,
        backbone_config=lambda dims, length: dict(
            key_value_dim=dims["hidden_dim"] // dims["num_heads"]),
        pretrainer=_language_model(spans.Seq2SeqPretrainer),
        make_data=_span_corruption_batches,
        tokens=dict(end="</s>", pad="<pad>"),
        classification_wrap=((), ("end",)),
        classification_inputs=_encoder_decoder_inputs,
    ),
    FamilySpec(
        "deberta",
        dict(architecture="encoder", objective="MLM (dynamic masking)",
             attention="disentangled attention (content and relative position separately)",
             tokenizer="SentencePiece unigram"),
        train_tokenizer=_unigram(
            _models.DebertaV3Tokenizer, pad_id=0, unk_id=1, bos_id=2, eos_id=3,
            pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]",
            user_defined_symbols=["[MASK]"]),
        backbone=_models.DebertaV3Backbone,
        backbone_config=lambda dims, length: dict(max_sequence_length=length,
                                                  bucket_size=length // 2),
        pretrainer=_masked_lm,
        make_data=_masked_lm_batches,
        tokens=dict(_BERT_TOKENS),
    ),
)}

INFO = {name: spec.info for name, spec in FAMILIES.items()}


def _spec(name):
    if name not in FAMILIES:
        raise ValueError(f"Unknown family {name!r}: one of {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def _ids(tokenizer, token):
    return int(tokenizer.token_to_id(token))


# --- the public functions -------------------------------------------------------------------------
def train_tokenizer(name, texts, vocabulary_size=2000):
    """Train the tokenizer of family ``name`` on ``texts``; returns a keras-hub tokenizer.

    Special tokens and their ids (the keras-hub class looks the names up):
    bert WordPiece [PAD]=0 [UNK] [CLS] [SEP] [MASK]; gpt2 BPE <|endoftext|>=0 (keras-hub's
    GPT-2 pads with id 0); roberta BPE <s>=0 <pad> </s> <unk> <mask>; albert SentencePiece
    <pad>=0 <unk> [CLS] [SEP] [MASK]; deberta [PAD]=0 [UNK] [CLS] [SEP] [MASK]; t5 <pad>=0
    </s> <unk> <extra_id_0..31>; xlnet (no keras-hub class: a plain SentencePieceTokenizer)
    <unk>=0 <s> </s> <cls> <sep> <pad> <mask>, XLNet's own layout.
    """
    return _spec(name).train_tokenizer(texts, vocabulary_size)


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
    def spec(self):
        return FAMILIES[self.name]

    @property
    def info(self):
        return self.spec.info


def build_family(name, tokenizer, size="tiny", sequence_length=None, learning_rate=None,
                 dropout=0.0):
    """Build family ``name`` at ``size`` ("tiny", "small" or a dict of ``SIZES`` keys).

    Returns a ``Family`` whose ``model`` is compiled for the family's own objective and whose
    ``make_data(texts)`` produces its batches. ``dropout`` defaults to 0: the course's runs
    are far too short to overfit, and dropout slows how fast a few steps lower the loss.
    """
    spec = _spec(name)
    if isinstance(size, dict):  # a custom size: any keys of SIZES["tiny"] overridden
        dims, size = {**SIZES["tiny"], **size}, "custom"
    elif size in SIZES:
        dims = dict(SIZES[size])
    else:
        raise ValueError(f"Unknown size {size!r}: one of {', '.join(SIZES)} or a dict.")
    length = sequence_length or dims["sequence_length"]
    lr = learning_rate or dims["learning_rate"]
    backbone = spec.backbone(
        vocabulary_size=tokenizer.vocabulary_size(), dropout=dropout,
        **{key: dims[key] for key in ("num_layers", "hidden_dim", "num_heads", "intermediate_dim")},
        **spec.backbone_config(dims, length),
    )
    model = spec.pretrainer(backbone, lr, dropout)
    make_data = spec.make_data(tokenizer, length, spec.token_ids(tokenizer))
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
    spec, tok = family.spec, family.tokenizer
    token_ids = spec.token_ids(tok)
    before, after = spec.classification_wrap
    start, end = [token_ids[r] for r in before], [token_ids[r] for r in after]
    pad = token_ids["pad"]
    length = family.sequence_length
    body = length - len(start) - len(end)
    ids = np.full((len(texts), length), pad, dtype="int32")
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(_token_lists(tok, texts)):
        seq = start + list(tokens)[:body] + end
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return spec.classification_inputs(ids, mask, pad, family.backbone)


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
