"""`low_label_conv_mnist5k` with all 3,333 training labels.

Command, as two shards, each pinned to one of 2 CPU cores, then merged::

    taskset -c 0 experiments low_label_conv_mnist5k_all --shard 0/2 \\
        --workdir runs/conv_all_0 &
    taskset -c 1 experiments low_label_conv_mnist5k_all --shard 1/2 \\
        --workdir runs/conv_all_1
    wait
    experiments merge runs/conv_all runs/conv_all_0 runs/conv_all_1

The same encoder, strategies, baselines, learning-rate search and 5 seeds as
`low_label_conv_mnist5k`. With all labels an epoch is 105 steps of 32
examples, against 16 at 500 labels. So every stage here gets a third of the
default epochs (20 for the head, 10 per unfreezing stage, 50 for scratch)
and a patience of 5, which still gives about twice the steps of the
500-label cells. The two shards took 41 and 48 minutes, run at the same time
on a 2-core machine that ran nothing else but two test runs of under a
minute.

Two processes pinned to one core each ran this grid's conv step 1.35 to 1.42
times faster in all than one process on both cores did (`python -m
experiments.benchmarks.pinned`). So one plain run of the whole grid would
take about 60 to 65 minutes there (an estimate from those ratios, not a
run). "Running a grid on a CPU machine" on docs/guide.md gives the figures.

Result (2026-12-04): scratch is best (0.978); `gradual` is 0.006 behind
(p = 0.060) and both beat k-NN (0.918) and logistic regression (0.893) on
pixels.

Results are on docs/results.md.
"""

import ml_collections

from experiments.configs import low_label_conv_mnist5k


def get_config() -> ml_collections.ConfigDict:
    config = low_label_conv_mnist5k.get_config()
    config.budgets = ("all",)
    config.finetune.epochs_head = 20
    config.finetune.epochs_finetune = 10
    config.finetune.patience = 5
    return config
