"""The mnist5k part of `experiments low_label_masked`.

Command::

    experiments low_label_masked_mnist5k --workdir runs/low_label_masked_mnist5k

`mae` and `scratch` x budgets 20, 50, 100, 500 and all x 5 seeds on
mnist5k's 28x28 images: 50 fine-tuning runs and 5 pretraining runs. The
ViT, fine-tuning settings and learning-rate search are those of
`low_label_masked`, and the ViT cuts each image into 16 patches of 7x7
pixels. `masked_features` on mnist5k
is the experiment `low_label_masked_features`.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs.low_label_masked import masked_config


def get_config() -> ml_collections.ConfigDict:
    config = masked_config(("mnist5k",))
    # It runs on digits only in `low_label_masked`.
    del config.strategies["masked_features"]
    return config
