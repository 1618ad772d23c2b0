"""Tables and plots of an experiment's results."""

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # no display needed; must run before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
        "Test accuracy, mean ± standard deviation over seeds.",
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
    """One sentence on whether the best pretrained strategy beats scratch."""
    summary = summarize(rows)
    scratch = summary.get(("scratch", budget))
    pretrained = {
        method: stats
        for (method, b), stats in summary.items()
        if b == budget and method != "scratch" and _is_finetuned(rows, method)
    }
    if scratch is None or not pretrained:
        return ""
    best, stats = max(pretrained.items(), key=lambda item: item[1]["mean"])
    verdict = "above" if stats["mean"] > scratch["mean"] else "not above"
    return (
        f"At {budget} labels the best pretrained strategy, {best}, scores "
        f"{stats['mean']:.4f}, {verdict} scratch's {scratch['mean']:.4f} "
        f"(difference {stats['mean'] - scratch['mean']:+.4f}; standard "
        f"deviations {stats['std']:.4f} and {scratch['std']:.4f} over "
        f"{stats['runs']} seeds)."
    )


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
    ax.set_ylabel("test accuracy")
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
