"""Gradual unfreezing against full fine-tuning, for a dense and a Transformer
encoder.

Command::

    experiments unfreeze --workdir runs/unfreeze

ULMFiT (Howard and Ruder, "Universal Language Model Fine-tuning for Text
Classification", ACL 2018, arXiv:1801.06146) reports that unfreezing a
pretrained network one layer at a time from the top beats fine-tuning every
layer at once. This grid tests that claim on two encoders, each fine-tuned
from one pretraining run with four strategies:

- `linear_probe`: the head alone on the frozen encoder.
- `gradual`: the head, then one more layer per stage from the top down.
- `full`: the head, then every layer at once.
- `gradual_drop_top`: `gradual` after dropping the encoder's top layer.

On `digits` the encoder is a stacked autoencoder (`ae`, widths (512, 256),
ReLU, as in `experiments quick`), so `gradual_drop_top` keeps its 512-unit
layer only. On `mnist1d` it is the small ViT of `mae` (depth 4, width 64,
4 heads, patches of 4 samples), and every Transformer block is one layer.
The mae strategies use the fine-tuning rates and epochs of
`experiments low_label_masked`. They try one learning rate in place of its
search over three, which would triple the mnist1d time.

Estimate: about 60 minutes on 2 CPU cores (7 on digits, 53 on mnist1d), an
upper bound that assumes every stage runs all its epochs. It is the
per-epoch and per-run times of 2-epoch smoke runs (1 seed, all labels,
CPUs shared with other jobs) times the epochs and runs of the grid. The
per-epoch time of mae at 50 labels was not measured, and 0.03 s is assumed.
The mnist1d part alone (``--config.datasets="('mnist1d',)"``) took 39
minutes on 2 CPU cores shared with other jobs, and 13 minutes on an
otherwise idle 2-core AMD EPYC.

Result (2026-12-04, docs/results.md): on digits gradual and full tie; on
mnist1d with all labels gradual beats full by 0.12 (p = 0.017, 5 seeds),
and at 50 labels every strategy is near chance.
"""

import ml_collections

# The fine-tuning rates and epochs of experiments low_label_masked. One
# learning rate keeps mnist1d within about 53 minutes (estimate).
MAE_FINETUNE = {
    "lr_finetune": 1e-3,
    "epochs_head": 30,
    "epochs_finetune": 15,
    "lr_search": (1.0,),
}
ENCODERS = {"ae": ("digits",), "mae": ("mnist1d",)}
STRATEGIES = {
    "linear_probe": ("linear_probe", {}),
    "gradual": ("gradual", {}),
    "full": ("full", {}),
    "gradual_drop_top": ("gradual", {"drop_top": 1}),
}


def get_config(encoders=None) -> ml_collections.ConfigDict:
    """Build the grid for `encoders`, a {method: datasets} dict. The default
    is `ENCODERS`."""
    encoders = ENCODERS if encoders is None else encoders
    config = ml_collections.ConfigDict()
    config.datasets = tuple(d for datasets in encoders.values() for d in datasets)
    config.budgets = ("50", "all")
    config.seeds = (0, 1, 2, 3, 4)
    strategies = {}
    for method, datasets in encoders.items():
        for name, (preset, finetune) in STRATEGIES.items():
            if method == "mae":
                finetune = {**MAE_FINETUNE, **finetune}
            strategies[f"{method}_{name}"] = {
                "method": method,
                "preset": preset,
                "datasets": datasets,
                "finetune": finetune,
            }
    config.strategies = ml_collections.ConfigDict(strategies)
    # hidden and activation apply to ae only, and epochs to both methods.
    config.pretrain = ml_collections.ConfigDict(
        {"hidden": (512, 256), "activation": "relu", "epochs": 50}
    )
    config.finetune = ml_collections.ConfigDict({"lr_search": (0.5, 1.0, 2.0)})
    config.baselines = ("logreg_pixels", "knn_pixels")
    return config
