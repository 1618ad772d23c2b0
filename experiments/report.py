"""Tables and plots of an experiment's results: one section per dataset."""

import os
import re

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.epochs_plot import epoch_series, plot_epochs  # noqa: E402
from experiments.stats import (  # noqa: E402
    accuracy_by_seed,
    budget_sort_key,
    differences_from,
    paired_difference,
    summary_stats,
)
from experiments.transfer_chart import chart_table, plot_chart  # noqa: E402
from pretrain.workdir import write_text  # noqa: E402

INTRO = (
    "Test accuracy, mean ± standard deviation over seeds, with the half-width "
    "of the 95% t interval in brackets; the best mean per budget is in bold. "
    "Fine-tuned strategies also use a labelled validation set of "
    "max(labels / 5, classes) examples for early stopping and the "
    "learning-rate search. The sklearn baselines use the training labels only."
)
PROBES = (("probe_linear", "logistic regression"), ("probe_knn", "k-NN"))


def _datasets(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(str(row.get("dataset", "")) for row in rows))


def _methods(rows: list[dict]) -> list[str]:
    return sorted({row["method"] for row in rows}, key=natural_sort_key)


def natural_sort_key(name: str) -> list:
    """Order names as text but digit runs as numbers, so ae_e3 precedes ae_e10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _budgets(rows: list[dict]) -> list[str]:
    return sorted({str(row["label_budget"]) for row in rows}, key=budget_sort_key)


def _of_dataset(rows: list[dict], dataset: str) -> list[dict]:
    return [row for row in rows if str(row.get("dataset", "")) == dataset]


def _header(first: list[str], budgets: list[str]) -> list[str]:
    columns = first + [f"{budget} labels" for budget in budgets]
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def _interval(half_width: float | None) -> str:
    return "" if half_width is None else f" [±{half_width:.4f}]"


def _accuracy_cell(stats: dict | None, best: bool) -> str:
    if stats is None:
        return ""
    # One seed gives no spread, and a printed 0 would read as a measured one.
    spread = f" ± {stats['std']:.4f}" if stats["runs"] > 1 else ""
    text = f"{stats['mean']:.4f}{spread}{_interval(stats['ci95'])} (n={stats['runs']})"
    return f"**{text}**" if best else text


def accuracy_table(rows: list[dict], dataset: str) -> list[str]:
    """Markdown lines: test accuracy per method and budget on `dataset`."""
    summary = summary_stats(rows)
    budgets = _budgets(rows)
    best = {}
    for budget in budgets:
        means = [
            s["mean"] for (d, _, b), s in summary.items() if (d, b) == (dataset, budget)
        ]
        if means:
            best[budget] = max(means)
    lines = _header(["method"], budgets)
    for method in _methods(rows):
        cells = []
        for budget in budgets:
            stats = summary.get((dataset, method, budget))
            top = stats is not None and stats["mean"] == best.get(budget)
            cells.append(_accuracy_cell(stats, top))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def difference_table(
    rows: list[dict], dataset: str, reference: str = "scratch"
) -> list[str]:
    """Markdown lines: paired difference from `reference`; empty without it."""
    differences = differences_from(rows, reference)
    if not differences:
        return []
    budgets = _budgets(rows)
    lines = _header(["method"], budgets)
    for method in _methods(rows):
        if method == reference:
            continue
        cells = []
        for budget in budgets:
            difference = differences.get((dataset, method, budget))
            cells.append("" if difference is None else _difference_cell(difference))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _difference_cell(difference: dict) -> str:
    p_value = "" if difference["p"] is None else f", p = {difference['p']:.3f}"
    return (
        f"{difference['mean']:+.4f}{_interval(difference['ci95'])}{p_value} "
        f"(n={difference['seeds']})"
    )


def probe_table(rows: list[dict], dataset: str) -> list[str]:
    """Markdown lines: frozen-feature probe accuracy; empty without probes."""
    budgets = _budgets(rows)
    lines = []
    for column, label in PROBES:
        summary = summary_stats(rows, column)
        for method in _methods(rows):
            cells = [summary.get((dataset, method, budget)) for budget in budgets]
            if any(cells):
                formatted = [_accuracy_cell(stats, False) for stats in cells]
                lines.append(f"| {method} | {label} | " + " | ".join(formatted) + " |")
    if not lines:
        return []
    return _header(["method", "probe"], budgets) + lines


def dataset_section(rows: list[dict], dataset: str, heading: bool) -> list[str]:
    """Markdown lines of every table for one dataset."""
    rows = _of_dataset(rows, dataset)
    lines = [f"## {dataset}", ""] if heading else []
    lines += accuracy_table(rows, dataset)
    differences = difference_table(rows, dataset)
    if differences:
        lines += [
            "",
            "Paired difference from scratch in test accuracy "
            "(seeds present in both), 95% t interval and paired t-test p:",
            "",
        ]
        lines += differences
    probes = probe_table(rows, dataset)
    if probes:
        lines += [
            "",
            "Frozen-feature probes of each pretrained encoder on the "
            "same label subsets (test accuracy):",
            "",
        ]
        lines += probes
    if "all" in _budgets(rows):
        some = next(s for (_, _, b), s in summary_stats(rows).items() if b == "all")
        lines += [
            "",
            f"`all` means {some['labels']} training labels; the rest of the "
            "pool is the validation set.",
        ]
    note = comparison_note(rows)
    if note:
        lines += ["", note]
    return lines


def report_title(name: str, datasets: list[str]) -> str:
    return f"experiment {name or 'grid'} on {', '.join(datasets)}"


def markdown_table(
    rows: list[dict], title: str, notes: str = "", preamble: str = ""
) -> str:
    """Return results.md: the title, `preamble` if any, an intro, then one
    section per dataset and `notes` if any."""
    datasets = _datasets(rows)
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += [INTRO, ""]
    for dataset in datasets:
        lines += dataset_section(
            rows, dataset, heading=len(datasets) > 1 or bool(dataset)
        )
        lines.append("")
    if notes:
        lines += [notes, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def comparison_note(rows: list[dict], budget: str = "100") -> str:
    """Compare the best pretrained strategy with scratch, paired by seed.

    Uses the rows of the first dataset in `rows`. The verdict uses a
    two-sided paired t-test over seeds at the 5% level, so a difference
    smaller than the seed-to-seed spread is reported as such.
    """
    datasets = _datasets(rows)
    if not datasets:
        return ""
    dataset = datasets[0]
    scratch = accuracy_by_seed(rows, (dataset, "scratch", budget))
    candidates = [
        method
        for method in _methods(rows)
        if method != "scratch" and _is_finetuned(rows, method)
    ]
    paired = {m: accuracy_by_seed(rows, (dataset, m, budget)) for m in candidates}
    paired = {m: seeds for m, seeds in paired.items() if set(seeds) & set(scratch)}
    if not scratch or not paired:
        return ""

    best = max(paired, key=lambda m: np.mean(list(paired[m].values())))
    seeds = sorted(set(paired[best]) & set(scratch))
    ours = np.mean([paired[best][s] for s in seeds])
    theirs = np.mean([scratch[s] for s in seeds])
    difference = paired_difference(paired[best], scratch)
    text = (
        f"At {budget} labels the best pretrained strategy, {best}, scores "
        f"{ours:.4f} against scratch's {theirs:.4f} on the same "
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}. The paired "
        f"difference is {difference['mean']:+.4f}"
    )
    p_value = difference["p"]
    if p_value is None:
        return text + "."
    if p_value < 0.05:
        verdict = "higher" if difference["mean"] > 0 else "lower"
        return text + f", {verdict} than scratch (paired t-test p = {p_value:.3f})."
    return text + (
        f", within the seed-to-seed spread (paired t-test p = {p_value:.3f}), so "
        "these seeds show no reliable difference from scratch."
    )


def _is_finetuned(rows: list[dict], method: str) -> bool:
    return any(r["method"] == method and r["preset"] != "baseline" for r in rows)


def plot_accuracy(rows: list[dict], path: str, title: str) -> None:
    """Plot test accuracy against labels (log x), one panel per dataset.

    Error bars are the 95% t interval over seeds (none for a single seed).
    """
    summary = summary_stats(rows)
    datasets = _datasets(rows)
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False
    )
    # One colour per method across all panels, so a line is easy to follow.
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {m: cycle[i % len(cycle)] for i, m in enumerate(_methods(rows))}
    # Past the colour cycle's length, lines repeat colours in another style.
    styles = {
        m: ("-", "--", ":")[(i // len(cycle)) % 3] for i, m in enumerate(_methods(rows))
    }
    for ax, dataset in zip(axes[0], datasets, strict=True):
        counts = set()
        for method in _methods(_of_dataset(rows, dataset)):
            points = sorted(
                (stats["labels"], stats["mean"], stats["ci95"] or 0.0)
                for (d, m, _), stats in summary.items()
                if (d, m) == (dataset, method)
            )
            x, mean, error = (np.asarray(v) for v in zip(*points, strict=True))
            counts.update(int(n) for n in x)
            ax.errorbar(
                x,
                mean,
                yerr=error,
                marker="o",
                capsize=3,
                label=method,
                color=colors[method],
                linestyle=styles[method],
            )
        ax.set_xscale("log")
        # Tick the label counts themselves: over a narrow range the log axis
        # would otherwise label 5x10^1, 6x10^1 and so on.
        ax.set_xticks(sorted(counts), [str(n) for n in sorted(counts)])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("training labels")
        ax.set_ylabel("test accuracy (mean, 95% t interval over seeds)")
        ax.set_title(dataset or title)
        ax.grid(alpha=0.3)
        # Outside the axes, so that a legend of many methods hides no line.
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    if len(datasets) > 1:
        fig.suptitle(title)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def write_report(
    rows: list[dict],
    workdir: str,
    title: str,
    notes: str = "",
    transfer_chart: dict | None = None,
    preamble: str = "",
) -> str:
    """Write results.md and accuracy_vs_labels.png to `workdir`; with a
    `transfer_chart` section also transfer_chart.png, and where strategies
    differ in pretraining epochs accuracy_vs_pretrain_epochs.png. Return
    the table. A `preamble` goes right below the title."""
    table = markdown_table(rows, title, notes, preamble)
    if transfer_chart and rows:
        table += "\n" + "\n".join(chart_table(rows, transfer_chart)) + "\n"
        plot_chart(rows, transfer_chart, os.path.join(workdir, "transfer_chart.png"))
    write_text(os.path.join(workdir, "results.md"), table)
    if rows:
        plot_accuracy(rows, os.path.join(workdir, "accuracy_vs_labels.png"), title)
    if epoch_series(rows):
        path = os.path.join(workdir, "accuracy_vs_pretrain_epochs.png")
        plot_epochs(rows, path, title)
    return table
