"""ptft_keras: pre-training and fine-tuning of foundation models, in Keras 3.

Importing the package registers every serializable layer and model, so a ``.keras`` file saved
by the course loads in a fresh process after ``import ptft_keras``.
"""

from ptft_keras import (
    backbones,
    baseline,
    config,
    data,
    distributed,
    domain,
    evaluation,
    families,
    finance,
    finetune,
    labelbudget,
    multimodal,
    multitask,
    objectives,
    pretrained,
    pretraining,
    scaling,
    sensors,
    strategies,
    tokenizers,
)

__version__ = "0.1.0"
