"""Masked-feature pretraining of the dense MLP encoder on mnist5k and
MNIST-1D.

Command::

    experiments low_label_masked_features --workdir runs/low_label_masked_features

`masked_features` of `experiments low_label_masked`, which runs it on
digits, here on the two other embedded datasets. It is fine-tuned with
`gradual` and probed with `linear_probe` (`masked_features_probe`), and
`scratch` trains the same MLP from a random start. The fine-tuning
settings, learning-rate search, budgets (20, 50, 100, 500 and all), 5 seeds
and pixel baselines are those of `low_label_masked`.

It ran as two shards pinned to one core each (see "Running a grid on a
CPU machine" on docs/guide.md), which took 15 and 13 minutes on 2 CPU
cores shared with a CI run.

Result (2026-12-04): on mnist5k a small gain over scratch at 100 labels
(+0.025, p = 0.040, reaching 0.782) and none elsewhere. On MNIST-1D no
gain at any budget, and a loss from 500 labels on.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs.low_label_masked import masked_config


def get_config() -> ml_collections.ConfigDict:
    config = masked_config(("mnist5k", "mnist1d"))
    config.strategies = ml_collections.ConfigDict(
        {
            "scratch": {"preset": "scratch", "architecture": "masked_features"},
            "masked_features": {"method": "masked_features", "preset": "gradual"},
            "masked_features_probe": {
                "method": "masked_features",
                "preset": "linear_probe",
            },
        }
    )
    # `depth` sets the ViT of `mae`, which this grid leaves out.
    config.pretrain = ml_collections.ConfigDict({"epochs": 50})
    return config
