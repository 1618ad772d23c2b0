"""Tables and plots of an experiment's results."""

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from pretrain.workdir import write_text  # noqa: E402


def _budget_key(budget: str) -> float:
    return float("inf") if budget == "all" else float(budget)


def summarize(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Mean, standard deviation (ddof=1) and count of test accuracy per
    (method, label budget)."""
    groups = defaultdict(list)
    labels = defaultdict(list)
    for row in rows:
        key = (row["method"], str(row["label_budget"]))
        groups[key].append(float(row["test_accuracy"]))
        labels[key].append(int(row["labels"]))
    summary = {}
    for key, values in groups.items():
        values = np.asarray(values)
        summary[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "runs": len(values),
            "labels": int(np.mean(labels[key])),
        }
    return summary


def markdown_table(rows: list[dict], title: str, notes: str = "") -> str:
    summary = summarize(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    budgets = sorted({str(row["label_budget"]) for row in rows}, key=_budget_key)
    header = "| method | " + " | ".join(
        f"{b} labels" if b != "all" else "all labels" for b in budgets
    )
    lines = [
        f"# {title}",
        "",
        "Test accuracy, mean ± standard deviation over seeds. Fine-tuned "
        "strategies also use a labelled validation set of max(labels / 5, "
        "classes) examples for early stopping and the learning-rate search; "
        "the sklearn baselines use the training labels only.",
        "",
    ]
    lines += [header + " |", "|---" * (len(budgets) + 1) + "|"]
    for method in methods:
        cells = []
        for budget in budgets:
            stats = summary.get((method, budget))
            cells.append(
                ""
                if stats is None
                else f"{stats['mean']:.4f} ± {stats['std']:.4f} (n={stats['runs']})"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if "all" in budgets:
        some = next(s for (m, b), s in summary.items() if b == "all")
        lines += [
            "",
            f"`all` means {some['labels']} training labels; the rest of the "
            "pool is the validation set.",
        ]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def comparison_note(rows: list[dict], budget: str = "100") -> str:
    """Compare the best pretrained strategy with scratch, paired by seed.

    The verdict uses a two-sided paired t-test over seeds at the 5% level,
    so a difference smaller than the seed-to-seed spread is reported as such.
    """
    scratch = _by_seed(rows, "scratch", budget)
    candidates = {
        method
        for method in {r["method"] for r in rows}
        if method != "scratch" and _is_finetuned(rows, method)
    }
    paired = {m: _by_seed(rows, m, budget) for m in candidates}
    paired = {m: seeds for m, seeds in paired.items() if set(seeds) & set(scratch)}
    if not scratch or not paired:
        return ""

    best = max(paired, key=lambda m: np.mean(list(paired[m].values())))
    seeds = sorted(set(paired[best]) & set(scratch))
    ours = np.array([paired[best][s] for s in seeds])
    theirs = np.array([scratch[s] for s in seeds])
    difference = ours - theirs
    text = (
        f"At {budget} labels the best pretrained strategy, {best}, scores "
        f"{ours.mean():.4f} against scratch's {theirs.mean():.4f} on the same "
        f"{len(seeds)} seeds. The paired difference is {difference.mean():+.4f}"
    )
    if len(seeds) < 2 or np.all(difference == difference[0]):
        return text + "."
    p_value = float(stats.ttest_rel(ours, theirs).pvalue)
    if p_value < 0.05:
        verdict = "higher" if difference.mean() > 0 else "lower"
        return text + f", {verdict} than scratch (paired t-test p = {p_value:.3f})."
    return text + (
        f", within the seed-to-seed spread (paired t-test p = {p_value:.3f}), so "
        "these seeds show no reliable difference from scratch."
    )


def _by_seed(rows: list[dict], method: str, budget: str) -> dict[int, float]:
    return {
        int(r["seed"]): float(r["test_accuracy"])
        for r in rows
        if r["method"] == method and str(r["label_budget"]) == budget
    }


def _is_finetuned(rows: list[dict], method: str) -> bool:
    return any(r["method"] == method and r["preset"] != "baseline" for r in rows)


def plot_accuracy(rows: list[dict], path: str, title: str) -> None:
    """Test accuracy against the number of labels, one line per method."""
    summary = summarize(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in methods:
        points = sorted(
            (stats["labels"], stats["mean"], stats["std"])
            for (m, _), stats in summary.items()
            if m == method
        )
        x, mean, std = (np.asarray(v) for v in zip(*points, strict=True))
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("training labels")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def write_report(rows: list[dict], workdir: str, title: str, notes: str = "") -> str:
    notes = "\n\n".join(part for part in (comparison_note(rows), notes) if part)
    table = markdown_table(rows, title, notes)
    write_text(os.path.join(workdir, "results.md"), table)
    plot_accuracy(rows, os.path.join(workdir, "accuracy_vs_labels.png"), title)
    return table
