"""Run by tests/test_distributed.py in a fresh process: logical CPUs must be configured before
TensorFlow initialises, which pytest's process has long done. Prints one JSON line."""

import json
import sys

from ptft_keras import config, distributed, finetuning, models

distributed.logical_cpus(2)  # first TF work of the process

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


config.set_seed(0)
x, y = distributed.demo_data(n=512, features=20, classes=3, seed=0)
global_batch, epochs = 64, 3

single = distributed.train_once(tf.distribute.get_strategy(), distributed.demo_model, x, y,
                                global_batch, epochs, seed=0)
mirrored_strategy = distributed.get_strategy("mirrored")
mirrored = distributed.train_once(mirrored_strategy, distributed.demo_model, x, y,
                                  global_batch, epochs, seed=0)
# TensorFlow's own pick of all-reduce for CPU devices (no cross_device_ops given).
tf_default = distributed.train_once(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                                    distributed.demo_model, x, y, global_batch, epochs, seed=0)
again = distributed.train_once(tf.distribute.get_strategy(), distributed.demo_model, x, y,
                               global_batch, epochs, seed=0)
# A control that must differ: the same run with another global batch (different updates).
other_batch = distributed.train_once(tf.distribute.get_strategy(), distributed.demo_model, x, y,
                                     32, epochs, seed=0)

# The library's fine-tuning helper, data-parallel over the two logical CPUs.

rng = np.random.default_rng(0)
labels = rng.integers(0, 2, size=256).astype("int32")
ids = (np.where(labels == 1, 30, 5)[:, None] + rng.integers(0, 25, size=(256, 12))).astype("int32")
with mirrored_strategy.scope():
    backbone = models.TransformerBackbone(60, 12, num_layers=1, hidden_dim=16, num_heads=2,
                                             intermediate_dim=32)
    classifier = models.build_classifier(backbone, 2, pooling="mean")
result = finetuning.finetune(classifier, (ids, labels), (ids[:64], labels[:64]),
                               backbone=backbone, epochs=3, learning_rate=3e-3, batch_size=32,
                               distribute_strategy=mirrored_strategy)

print(json.dumps({
    "logical_cpus": len(tf.config.list_logical_devices("CPU")),
    "replicas": mirrored["replicas"],
    "cross_device_ops": type(mirrored_strategy.extended._cross_device_ops).__name__,
    "auto_kind": type(distributed.get_strategy("auto")).__name__,
    "initial_diff": distributed.max_weight_difference(single["initial_weights"],
                                                      mirrored["initial_weights"]),
    "weight_diff": distributed.max_weight_difference(single["weights"], mirrored["weights"]),
    "weight_diff_tf_default_ops": distributed.max_weight_difference(single["weights"],
                                                                    tf_default["weights"]),
    "weight_diff_single_rerun": distributed.max_weight_difference(single["weights"],
                                                                  again["weights"]),
    "weight_change": distributed.max_weight_difference(single["weights"],
                                                       single["initial_weights"]),
    "weight_diff_other_batch": distributed.max_weight_difference(single["weights"],
                                                                 other_batch["weights"]),
    "again_logical_cpus": distributed.logical_cpus(2),
    "finetune_val_accuracy": result.history["val_accuracy"],
    "finetune_variable_type": type(classifier.weights[0].value).__name__,
    "losses_single": single["losses"],
    "losses_mirrored": mirrored["losses"],
    "seconds_single": single["seconds"],
    "seconds_mirrored": mirrored["seconds"],
}))
sys.stdout.flush()
