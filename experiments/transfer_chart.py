"""The transfer-learning chart: which fine-tuning strategy wins with little or
much target data, from a similar or a different source.

An experiment config opts in with a `transfer_chart` section::

    config.transfer_chart = {
        "similar": ("mnist5k_target",),  # targets drawn like the source
        "different": ("mnist5k_rotated", "mnist5k_noise"),
        "little": "100",  # the label budget that counts as little data
        "much": "all",
    }

For each quadrant and target dataset the chart names the strategy with the
best mean test accuracy and the runner-up. Then it gives their paired
difference over seeds, so a win inside the seed-to-seed spread reads as a
tie. Baselines are left out: the chart compares ways to fine-tune.
"""

import logging
import os

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.stats import accuracy_by_seed, paired_difference  # noqa: E402
from pretrain import config as config_lib  # noqa: E402

logger = logging.getLogger(__name__)

CHART_KEYS = ("similar", "different", "little", "much")
SIMILARITIES = ("similar", "different")
SIZES = ("little", "much")


def check_chart(chart: dict, datasets: tuple[str, ...], budgets: tuple) -> None:
    """Raise ConfigError unless `chart` names known keys, datasets and budgets."""
    unknown = sorted(set(chart) - set(CHART_KEYS))
    missing = sorted(set(CHART_KEYS) - set(chart))
    config_lib.check(
        not unknown and not missing,
        "transfer_chart",
        sorted(chart),
        f"needs exactly the keys {list(CHART_KEYS)} (unknown {unknown}, "
        f"missing {missing})",
    )
    both = sorted(set(chart["similar"]) & set(chart["different"]))
    config_lib.check(
        not both,
        "transfer_chart.different",
        chart["different"],
        f"lists {both}, which transfer_chart.similar lists too; name each once",
    )
    config_lib.check(
        str(chart["little"]) != str(chart["much"]),
        "transfer_chart.much",
        chart["much"],
        "must differ from transfer_chart.little",
    )
    for similarity in SIMILARITIES:
        outside = [d for d in chart[similarity] if d not in datasets]
        if outside:
            # As with strategies, a grid narrowed with --config.datasets
            # leaves these quadrants' other datasets out of the chart.
            logger.warning(
                "transfer_chart.%s: %s are not among the experiment's datasets "
                "%s; the chart leaves them out",
                similarity,
                outside,
                list(datasets),
            )
    for size in SIZES:
        config_lib.check(
            str(chart[size]) in [str(b) for b in budgets],
            f"transfer_chart.{size}",
            chart[size],
            f"is not a label budget of this experiment; use one of {list(budgets)}",
        )


def _strategies(rows: list[dict], dataset: str) -> list[str]:
    return list(
        dict.fromkeys(
            row["method"]
            for row in rows
            if row["dataset"] == dataset and row["preset"] != "baseline"
        )
    )


def winners(rows: list[dict], chart: dict) -> dict[tuple[str, str], list[dict]]:
    """Per (similarity, size): one entry per target dataset with the best
    and second-best strategy, their means and the paired difference."""
    cells = {}
    for similarity in SIMILARITIES:
        for size in SIZES:
            budget = str(chart[size])
            entries = []
            for dataset in chart[similarity]:
                by_seed = {
                    method: accuracy_by_seed(rows, (dataset, method, budget))
                    for method in _strategies(rows, dataset)
                }
                ranked = sorted(
                    (m for m in by_seed if by_seed[m]),
                    key=lambda m: -np.mean(list(by_seed[m].values())),
                )
                if not ranked:
                    continue
                entry = {
                    "dataset": dataset,
                    "budget": budget,
                    "best": ranked[0],
                    "best_mean": float(np.mean(list(by_seed[ranked[0]].values()))),
                    "means": {
                        m: float(np.mean(list(by_seed[m].values()))) for m in ranked
                    },
                }
                if len(ranked) > 1:
                    entry["second"] = ranked[1]
                    entry["margin"] = paired_difference(
                        by_seed[ranked[0]], by_seed[ranked[1]]
                    )
                entries.append(entry)
            cells[(similarity, size)] = entries
    return cells


def _entry_text(entry: dict) -> str:
    text = f"{entry['dataset']}: **{entry['best']}** {entry['best_mean']:.4f}"
    margin = entry.get("margin")
    if margin is None:
        return text
    text += f" (+{margin['mean']:.4f} over {entry['second']}"
    p = margin["p"]
    if margin["seeds"] < 2:
        text += ", one seed, so no test"
    elif p is not None:
        text += f", p = {p:.3f}"
        if p >= 0.05:
            text += ", a tie"
    return text + ")"


def chart_table(rows: list[dict], chart: dict) -> list[str]:
    """Return the chart as a 2x2 markdown table: source similarity by target size."""
    cells = winners(rows, chart)
    lines = [
        "## Transfer chart",
        "",
        "Best fine-tuning strategy per target dataset and quadrant, with its "
        "margin over the runner-up (paired over seeds; a p of 0.05 or more is "
        "a tie).",
        "",
        f"| source | little target data ({chart['little']} labels) "
        f"| much target data ({chart['much']} labels) |",
        "|---|---|---|",
    ]
    for similarity in SIMILARITIES:
        texts = [
            "<br>".join(_entry_text(e) for e in cells[(similarity, size)]) or "no runs"
            for size in SIZES
        ]
        lines.append(f"| {similarity} | " + " | ".join(texts) + " |")
    return lines


def plot_chart(rows: list[dict], chart: dict, path: str) -> None:
    """Draw the four quadrants as bar charts of mean accuracy per strategy."""
    cells = winners(rows, chart)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), squeeze=False)
    for i, similarity in enumerate(SIMILARITIES):
        for j, size in enumerate(SIZES):
            ax = axes[i][j]
            entries = cells[(similarity, size)]
            methods = list(dict.fromkeys(m for e in entries for m in e["means"]))
            width = 0.8 / max(len(entries), 1)
            for k, entry in enumerate(entries):
                x = np.arange(len(methods)) + k * width
                heights = [entry["means"].get(m, np.nan) for m in methods]
                ax.bar(x, heights, width, label=entry["dataset"])
            ax.set_xticks(np.arange(len(methods)) + 0.4 - width / 2)
            ax.set_xticklabels(methods, rotation=45, ha="right", fontsize="small")
            ax.set_title(f"{similarity} source, {size} target data ({chart[size]})")
            ax.set_ylabel("mean test accuracy")
            ax.grid(alpha=0.3, axis="y")
            if entries:
                # Headroom above the bars keeps the legend off them.
                top = max(max(e["means"].values()) for e in entries)
                ax.set_ylim(0, 1.25 * top)
                ax.legend(fontsize="small", loc="upper right", ncol=len(entries))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
