"""Fine-tuning: ONE ``finetune()`` for every strategy, and the strategies themselves.

``finetune(model, (x, y), validation=(x_val, y_val), strategy=...)`` with ``strategy`` in
``ALL_STRATEGIES`` = head, freeze_bottom, full, gradual, llrd, lora: inputs checked first,
AdamW with warmup + linear decay, early stopping on validation loss (best weights restored);
returns a ``FinetuneResult`` (history, seconds, trainable/total parameters).
"""

from ptft_keras.finetuning.finetune import FinetuneResult, compile_classifier, find_backbone, finetune
from ptft_keras.finetuning.repeatable import ModelSnapshot, snapshot_values
from ptft_keras.finetuning.strategies import (
    ALL_STRATEGIES,
    LORA_TARGETS,
    STRATEGIES,
    GradualUnfreezing,
    apply_lora,
    apply_strategy,
    backbone_blocks,
    count_params,
    describe,
    group_learning_rates,
    group_names,
    layerwise_lr_multipliers,
    llrd_optimizer,
    lora_delta,
    lora_layers,
    merge_lora,
    strategy_report,
    unfreeze_top,
)
