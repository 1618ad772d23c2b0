"""The convolutional encoder of `low_label_conv` on digits' 8x8 images.

Command::

    experiments low_label_conv_digits --workdir runs/low_label_conv_digits

Two stages of 32 and 64 channels with kernel 3, batch norm and max pooling
(8x8 to 4x4 to 2x2) are pretrained stage by stage as a denoising
convolutional autoencoder on digits' training pool. They are fine-tuned
with the same presets, head learning rate and learning-rate search as
`low_label_conv`, over budgets 20 to all and 5 seeds. `full` is left out,
as on mnist5k. Its runs took 21 minutes on 2 CPU cores, shared with other
jobs for part of the time.

Result (2026-12-04): up to 100 labels logistic regression on pixels is
best (0.897 at 100), and `gradual` leads the fine-tuned strategies (0.867
at 100) without a reliable gain over scratch. From 500 labels on scratch is
best (0.988 and 0.991).

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv.get_config()
    config.datasets = ("digits",)
    del config.strategies["conv_dae_full"]
    config.pretrain.stages = (32, 64)
    config.pretrain.kernel_size = 3
    # Digits has 1,437 training images and MNIST-1D 4,000, so 15 epochs
    # here take about as many steps as 5 there.
    config.pretrain.epochs = 15
    return config
