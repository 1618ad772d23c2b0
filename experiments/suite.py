"""Suites: named experiments that run other named experiments, their parts.

A config module under `experiments/configs/` that defines `PARTS`, a tuple of
experiment names, instead of `get_config` is a suite. `experiments SUITE
--workdir DIR` runs each part as its own grid in DIR/PART, one after another,
with the same `--shard` and `--config.KEY=VALUE` overrides. Each part writes
its own results.csv, results.md and plots, and resumes like any grid. Then
DIR/results.csv gets the rows of every part, with the part's name in a
first column `experiment`. DIR/results.md gets the mean test accuracy of
every strategy and baseline per dataset and budget, and a link to each
part's full report.
"""

import csv
import importlib
import io
import logging
import os

import numpy as np

from experiments.grid import check_grid, load_experiment, run_grid
from experiments.report import natural_sort_key, report_title, write_report
from experiments.results import (
    COLUMNS,
    GRID_FILE,
    MERGED_FILE,
    SUITE_FILE,
    read_csv,
    remove_report,
)
from experiments.stats import budget_sort_key
from experiments.strategies import experiment_datasets
from pretrain import config as config_lib
from pretrain.config import ConfigError
from pretrain.workdir import (
    WorkdirError,
    check_workdir,
    read_json_object,
    write_json,
    write_text,
)

logger = logging.getLogger(__name__)

SUITE_COLUMNS = ("experiment",) + COLUMNS


def suite_parts(name: str) -> tuple[str, ...] | None:
    """Return the parts of the named experiment if it is a suite, else None."""
    module = importlib.import_module(f"experiments.configs.{name}")
    parts = getattr(module, "PARTS", None)
    return None if parts is None else tuple(parts)


def part_configs(parts, file: str | None, overrides: dict) -> dict:
    """Build every part's config with the same overrides, checking all of them
    before any part runs."""
    if file:
        raise ConfigError(
            f"--config {file!r} cannot apply to a suite, whose parts have "
            "different configs; pass --config.KEY=VALUE overrides, or run the "
            "part you want to change with --config"
        )
    configs = {}
    for part in parts:
        try:
            configs[part] = config_lib.build_config(
                lambda part=part: load_experiment(part),
                overrides=overrides,
                open_sections=("pretrain", "finetune"),
            )
        except ConfigError as error:
            raise ConfigError(f"suite part {part!r}: {error}") from None
    return configs


def _check_suite_dir(workdir: str, name: str, *, merging: bool = False) -> None:
    """Reject a workdir that contains a grid run, another suite, or (unless
    `merging`) merged results, whose files the suite would replace."""
    if os.path.isfile(os.path.join(workdir, GRID_FILE)):
        raise ConfigError(
            f"{workdir!r} contains the run of a grid ({GRID_FILE}); give the "
            f"suite {name!r} a --workdir of its own"
        )
    if not merging and os.path.isfile(os.path.join(workdir, MERGED_FILE)):
        raise ConfigError(
            f"{workdir!r} contains merged results ({MERGED_FILE}); give the "
            f"suite {name!r} a --workdir of its own"
        )
    suite = read_suite(workdir)
    if suite is None:
        return
    if suite["suite"] != name:
        raise ConfigError(
            f"{workdir!r} contains the suite {suite['suite']!r}, not {name!r}; "
            "give each suite its own --workdir"
        )
    if ("merged_from" in suite) != merging:
        contents = "merged results" if "merged_from" in suite else "a suite run"
        command = "the merge" if merging else "the run"
        raise ConfigError(
            f"{workdir!r} contains {contents} of the suite {name!r}; give "
            f"{command} a directory of its own"
        )


def run_suite(
    name: str,
    workdir: str,
    *,
    file: str | None = None,
    overrides: dict | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> str:
    """Run every part of the suite `name` in WORKDIR/PART and write the
    combined results.csv and results.md to `workdir`; return results.md."""
    configs = part_configs(suite_parts(name), file, overrides or {})
    return run_parts(name, workdir, configs, shard=shard, progress=progress)


def run_parts(
    name: str,
    workdir: str,
    configs: dict,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> str:
    """Run the grid of each (part, config) of `configs` in WORKDIR/PART, in
    order, and write the suite's combined results; return results.md.

    Every part is checked before the first one runs.
    """
    workdir = check_workdir(workdir)
    _check_suite_dir(workdir, name)
    for part, config in configs.items():
        try:
            part_dir = check_workdir(os.path.join(workdir, part))
            check_grid(config, part_dir, shard=shard, name=part)
        except (ConfigError, WorkdirError) as error:
            raise type(error)(f"suite part {part!r}: {error}") from None

    parts = tuple(configs)
    os.makedirs(workdir, exist_ok=True)
    write_json(
        os.path.join(workdir, SUITE_FILE),
        {"suite": name, "parts": list(parts), "shard": list(shard)},
    )
    # The combined results are written only at the end, so ones left by an
    # earlier run would look current after an interrupted rerun.
    remove_report(workdir)
    for i, (part, config) in enumerate(configs.items()):
        logger.info("suite %s: part %d of %d, %s", name, i + 1, len(parts), part)
        part_dir = os.path.join(workdir, part)
        rows = run_grid(config, part_dir, shard=shard, progress=progress, name=part)
        title = report_title(part, list(experiment_datasets(config)))
        chart = config.get("transfer_chart")
        chart = None if chart is None else config_lib.to_dict(chart)
        write_report(rows, part_dir, title, transfer_chart=chart)
    return write_suite_report(name, workdir, parts)


def read_suite(workdir: str) -> dict | None:
    """Return the suite.json of `workdir`, or None if it contains no suite run.

    Raises ConfigError when the file is not a suite's.
    """
    path = os.path.join(workdir, SUITE_FILE)
    if not os.path.isfile(path):
        return None
    fix = "Delete the directory and run the suite again"
    try:
        suite = read_json_object(path)
    except ValueError as error:
        raise ConfigError(f"{error}; the suite file is damaged. {fix}") from None
    valid = (
        isinstance(suite.get("suite"), str)
        and isinstance(suite.get("parts"), list)
        and all(isinstance(part, str) for part in suite["parts"])
    )
    if not valid:
        raise ConfigError(
            f"{path!r} is damaged: it must contain a 'suite' name and a list of "
            f"'parts'. {fix}"
        )
    return suite


def merge_suite(out_dir: str, shard_dirs: list[str], *, overwrite: bool) -> str:
    """Merge the shards of a suite part by part into OUT_DIR/PART, then write
    the combined results; return results.md.

    Every part's shards are checked before anything is written.
    """
    from experiments.merge import plan_merge, write_merge

    suites = [read_suite(d) for d in shard_dirs]
    names = {None if s is None else s["suite"] for s in suites}
    if len(names) != 1 or None in names:
        raise ConfigError(
            f"shard directories {shard_dirs} must all be shards of one suite "
            f"(found suites {sorted(map(str, names))}); pass the --workdir of "
            "each shard of the same suite"
        )
    name, parts = suites[0]["suite"], tuple(suites[0]["parts"])
    out_dir = check_workdir(out_dir)
    _check_suite_dir(out_dir, name, merging=True)
    plans = []
    for part in parts:
        part_shards = [os.path.join(d, part) for d in shard_dirs]
        try:
            part_out = os.path.join(out_dir, part)
            plans.append(plan_merge(part_out, part_shards, overwrite=overwrite))
        except ConfigError as error:
            raise ConfigError(f"suite part {part!r}: {error}") from None

    for plan in plans:
        write_merge(plan)
    write_json(
        os.path.join(out_dir, SUITE_FILE),
        {
            "suite": name,
            "parts": list(parts),
            "merged_from": [os.path.abspath(d) for d in shard_dirs],
        },
    )
    incomplete = next((plan.incomplete for plan in plans if plan.incomplete), "")
    return write_suite_report(name, out_dir, parts, preamble=incomplete)


def write_suite_report(
    name: str, workdir: str, parts: tuple[str, ...], preamble: str = ""
) -> str:
    """Write the combined results.csv and results.md of a suite's parts; a
    `preamble` goes right below the title."""
    rows = []
    for part in parts:
        rows += [
            {"experiment": part, **row}
            for row in read_csv(os.path.join(workdir, part, "results.csv"))
        ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUITE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(os.path.join(workdir, "results.csv"), buffer.getvalue())

    report = suite_markdown(name, parts, rows, preamble)
    write_text(os.path.join(workdir, "results.md"), report)
    return report


def suite_markdown(
    name: str, parts: tuple[str, ...], rows: list[dict], preamble: str = ""
) -> str:
    """Return the suite's results.md: links to the parts, then per dataset the
    mean test accuracy of every (part, strategy) with the best per budget in
    bold."""
    lines = [f"# suite {name}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += [
        "Mean test accuracy over seeds, per part and strategy; the best mean "
        "per budget is in bold. Each part's results.md has the spread, the 95% "
        "intervals, the paired differences from its own scratch and the probes. "
        "The parts draw the same label subsets, so each baseline is shown once, "
        "from the first part that runs it; n is the number of seeds.",
        "",
    ]
    lines += [f"- [{part}]({part}/results.md)" for part in parts]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        lines += ["", f"## {dataset}", ""]
        lines += _dataset_table([r for r in rows if r["dataset"] == dataset])
    return "\n".join(lines) + "\n"


def _mean_accuracies(rows: list[dict]) -> dict:
    """Map (part, strategy) to {budget: (mean test accuracy, runs)}.

    Baselines get the part "" and come from the first part that runs them.
    """
    values, baseline_part = {}, {}
    for row in rows:
        if row["test_accuracy"] is None:
            continue
        part = row["experiment"]
        if row["preset"] == "baseline":
            if baseline_part.setdefault(row["method"], part) != part:
                continue
            part = ""
        cell = values.setdefault((part, row["method"]), {})
        cell.setdefault(row["label_budget"], []).append(row["test_accuracy"])
    return {
        key: {budget: (float(np.mean(v)), len(v)) for budget, v in cell.items()}
        for key, cell in values.items()
    }


def _dataset_table(rows: list[dict]) -> list[str]:
    means = _mean_accuracies(rows)
    budgets = sorted({r["label_budget"] for r in rows}, key=budget_sort_key)
    best = {
        budget: max(cell[budget][0] for cell in means.values() if budget in cell)
        for budget in budgets
    }
    header = " | ".join(f"{budget} labels" for budget in budgets)
    lines = [f"| part | strategy | {header} |", "|---|---|" + "---|" * len(budgets)]
    for part, method in sorted(means, key=lambda k: (k[0], natural_sort_key(k[1]))):
        cells = []
        for budget in budgets:
            if budget not in means[(part, method)]:
                cells.append("")
                continue
            mean, runs = means[(part, method)][budget]
            text = f"{mean:.4f} (n={runs})"
            cells.append(f"**{text}**" if mean == best[budget] else text)
        lines.append(f"| {part or 'baseline'} | {method} | {' | '.join(cells)} |")
    return lines
