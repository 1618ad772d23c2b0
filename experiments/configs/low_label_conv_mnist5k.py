"""The convolutional encoder of `low_label_conv` on mnist5k, at 20, 50 and
100 labels.

Command::

    experiments low_label_conv_mnist5k --workdir runs/low_label_conv_mnist5k

The same stacked denoising convolutional autoencoder, fine-tuning settings
and learning-rate search as `low_label_conv`, on mnist5k's 28x28 images,
over 5 seeds. `full` is left out. Budget 500 is the experiment
`low_label_conv_mnist5k_500` and all labels `low_label_conv_mnist5k_all`,
because on 2 CPU cores a fine-tuning cell with its three-rate search takes
about a second per label on these images. The runs took 62 minutes in all
on 2 CPU cores shared with other jobs.

Result (2026-12-04): at 50 and 100 labels `gradual` beats scratch by 0.25
and 0.27 (p <= 0.005) and logistic regression on pixels by 0.03 and 0.06,
reaching 0.815 at 100 labels. At 20 labels logistic regression on pixels is
best. `linear_probe` needs the codes standardised to come near a logistic
probe of the same codes.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv.get_config()
    config.datasets = ("mnist5k",)
    config.budgets = ("20", "50", "100")
    del config.strategies["conv_dae_full"]
    return config
