"""Downstream accuracy against pretraining length.

Some grids have strategies that differ only in `pretrain.epochs`, such as
`ae_e1`, `ae_e10` and `ae_e30` in `experiments pretrain_length`. Their plot
has one line per (pretraining method, preset, label budget) for the
fine-tuned test accuracy. A dashed line in the same colour gives the linear
probe of the frozen codes.
"""

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.stats import t_half_width  # noqa: E402


def epoch_series(rows: list[dict], column: str = "test_accuracy") -> dict:
    """Map (dataset, pretrain_method, preset, budget) to sorted
    (epochs, mean, 95% half-width) points, keeping series with two or more
    pretraining lengths."""
    values = defaultdict(list)
    for row in rows:
        epochs, value = row.get("pretrain_epochs"), row.get(column)
        if epochs in (None, "") or value in (None, ""):
            continue
        key = (row["dataset"], row["pretrain_method"], row["preset"])
        values[(*key, str(row["label_budget"]), int(epochs))].append(float(value))

    series = defaultdict(list)
    for (*key, epochs), points in values.items():
        points = np.asarray(points)
        half_width = t_half_width(points) or 0.0
        series[tuple(key)].append((epochs, float(points.mean()), half_width))
    return {key: sorted(points) for key, points in series.items() if len(points) > 1}


def plot_epochs(rows: list[dict], path: str, title: str) -> None:
    """Plot accuracy against pretraining epochs (log x), one panel per dataset."""
    tuned, probed = epoch_series(rows), epoch_series(rows, "probe_linear")
    datasets = list(dict.fromkeys(key[0] for key in tuned))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False
    )
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes[0], datasets, strict=True):
        keys = [key for key in tuned if key[0] == dataset]
        for i, key in enumerate(keys):
            _, method, preset, budget = key
            color = cycle[i % len(cycle)]
            label = f"{method} ({preset}), {budget} labels"
            x, mean, error = (np.asarray(v) for v in zip(*tuned[key], strict=True))
            ax.errorbar(x, mean, yerr=error, marker="o", capsize=3, color=color)
            ax.plot([], [], color=color, marker="o", label=label)
            if key in probed:
                x, mean, _ = (np.asarray(v) for v in zip(*probed[key], strict=True))
                ax.plot(x, mean, linestyle="--", marker=".", color=color)
        ax.plot([], [], linestyle="--", color="grey", label="linear probe (dashed)")
        ax.set_xscale("log")
        ax.set_xlabel("pretraining epochs (per layer for stacked methods)")
        ax.set_ylabel("test accuracy (mean, 95% t interval)")
        ax.set_title(dataset or title)
        ax.grid(alpha=0.3)
        # Below the axes, so the legend never covers a line.
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18))
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
