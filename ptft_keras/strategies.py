"""Fine-tuning strategies: which weights learn.

A strategy is a function that sets ``trainable`` flags on a backbone; it works on our backbones
and on keras-hub's (their encoder blocks are ``transformer_layers``). Re-``compile`` after
changing a strategy: Keras fixes the trainable set at compile time.

- ``"head"``: freeze the whole backbone, train only the new head (a linear probe if the head is
  one Dense layer).
- ``"freeze_bottom"``: freeze the embeddings and the bottom ``k`` blocks; the top blocks and the
  head learn (lower layers hold general features, upper layers task-specific ones).
- ``"full"``: everything learns.
"""

import numpy as np

STRATEGIES = ("head", "freeze_bottom", "full")


def backbone_blocks(backbone):
    """The backbone's layers that strategies freeze, bottom to top: [embeddings, block_0, ...].

    Works for ptft_keras backbones (``embedding_layers`` + ``blocks``) and keras-hub backbones
    (``transformer_layers``; every other layer with weights counts as embedding).
    """
    if hasattr(backbone, "blocks"):
        return [list(backbone.embedding_layers)] + [[block] for block in backbone.blocks]
    if hasattr(backbone, "transformer_layers"):
        blocks = list(backbone.transformer_layers)
        block_ids = {id(layer) for layer in blocks}
        embeddings = [
            layer for layer in backbone.layers if layer.weights and id(layer) not in block_ids
        ]
        return [embeddings] + [[block] for block in blocks]
    raise TypeError(
        f"{type(backbone).__name__} has neither `blocks` (ptft_keras backbones) nor "
        f"`transformer_layers` (keras-hub backbones): cannot tell its layers apart."
    )


def apply_strategy(backbone, strategy, k=None):
    """Set trainable flags on ``backbone`` for ``strategy`` in STRATEGIES; returns the backbone.

    ``k`` (freeze_bottom only): how many blocks above the embeddings to freeze, 0..num_blocks.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of {STRATEGIES}.")
    groups = backbone_blocks(backbone)
    # Undo an earlier strategy: setting the parent's flag does not reset its sub-layers'.
    backbone.trainable = True
    for group in groups:
        for layer in group:
            layer.trainable = True
    if strategy == "head":
        backbone.trainable = False
    elif strategy == "freeze_bottom":
        num_blocks = len(groups) - 1
        if k is None or not 0 <= k <= num_blocks:
            raise ValueError(
                f"freeze_bottom needs k between 0 and {num_blocks} (the backbone's number of "
                f"blocks), got k={k!r}."
            )
        for group in groups[: k + 1]:  # embeddings + bottom k blocks
            for layer in group:
                layer.trainable = False
    return backbone


def count_params(model):
    """(trainable, total) parameter counts of a built model."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    return trainable, total


def describe(model):
    """One line: 'trainable 12,345 of 1,234,567 parameters (1.0%)'."""
    trainable, total = count_params(model)
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / total:.1f}%)"
