"""The mnist5k part of `experiments low_label_masked`.

Command::

    experiments low_label_masked_mnist5k --workdir runs/low_label_masked_mnist5k

`mae` and `scratch` x budgets 20, 50, 100, 500 and all x 5 seeds on
mnist5k's 28x28 images: 50 fine-tuning runs and 5 pretraining runs. The
ViT, fine-tuning settings and learning-rate search are those of
`low_label_masked`, and the ViT cuts each image into 16 patches of 7x7
pixels. `masked_features` on mnist5k is the experiment
`low_label_masked_features`.

It ran as two shards pinned to one core each (the commands of "Running a
grid on a CPU machine" on docs/guide.md), which took 23 and 25 minutes on
2 CPU cores.

Result (2026-12-04): MAE pretraining beats the ViT from scratch at every
budget up to 500 labels (+0.21 at 20, +0.12 at 100, +0.06 at 500; p <=
0.009) and ties with it with all labels (0.920). Logistic regression on
pixels beats both up to 500 labels (0.752 against 0.559 at 100).

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs.low_label_masked import masked_config


def get_config() -> ml_collections.ConfigDict:
    config = masked_config(("mnist5k",))
    # It runs on digits only in `low_label_masked`.
    del config.strategies["masked_features"]
    return config
