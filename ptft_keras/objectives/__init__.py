"""Pre-training objectives, one file each: a NumPy data transformation (deterministic for a given
``np.random.Generator``) and the Keras model it trains, compiled with a loss over the predicted
positions only.

- ``mlm``: masked language modelling (BERT static, RoBERTa dynamic) -> ``MaskedLMPretrainer``;
  ``compile_lm`` / ``perplexity`` serve every token-prediction objective.
- ``causal_lm``: next-token prediction (GPT) -> ``CausalLMPretrainer``; ``generate``.
- ``sentence_pairs``: NSP (BERT) and SOP (ALBERT) -> ``SentencePairPretrainer``.
- ``spans``: T5 span corruption -> ``Seq2SeqPretrainer``.
- ``permutation_lm``: XLNet two-stream attention -> ``PermutationLMPretrainer``.
- ``word_vectors``: CBOW with negative sampling (word2vec) on a backbone's token embedding ->
  ``WordVectorPretrainer``, ``CBOWDataset``.
- ``families``: the seven families as data (backbone, tokenizer kind, objective, special tokens).
"""

from ptft_keras.objectives.causal_lm import (
    CausalLMPretrainer,
    causal_lm_arrays,
    chunk_token_stream,
    generate,
    make_sampler,
)
from ptft_keras.objectives.base import Pretrainer
from ptft_keras.objectives.mlm import (
    MaskedLMPretrainer,
    MLMDataset,
    compile_lm,
    compile_mlm,
    evaluate_mlm,
    mask_tokens,
    perplexity,
)
from ptft_keras.objectives.permutation_lm import (
    PermutationLMPretrainer,
    permutation_lm_arrays,
    permutation_masks,
)
from ptft_keras.objectives.sentence_pairs import (
    SentencePairPretrainer,
    compile_sentence_pair,
    sample_nsp_pairs,
    sample_sop_pairs,
    sentence_pair_arrays,
    split_sentences,
)
from ptft_keras.objectives.spans import (
    Seq2SeqPretrainer,
    apply_span_mask,
    random_spans_noise_mask,
    span_corruption,
    span_corruption_arrays,
    span_counts,
)
from ptft_keras.objectives.word_vectors import (
    CBOWDataset,
    WordVectorPretrainer,
    cbow_arrays,
    token_stream,
)
from ptft_keras.objectives import families  # noqa: E402  (builds on the objectives above)
