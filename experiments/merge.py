"""Combine the results.csv files of grid shards into one result directory."""

import dataclasses
import logging
import os

from experiments.report import report_title, write_report
from experiments.results import (
    GRID_FILE,
    MERGED_FILE,
    REPORT_FILES,
    read_csv,
    row_key,
    write_csv,
)
from pretrain.config import ConfigError
from pretrain.workdir import check_workdir, read_json_object, write_json

logger = logging.getLogger(__name__)


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(
            f"{path!r} not found: pass the --workdir of a finished grid shard"
        )
    try:
        return read_json_object(path)
    except ValueError as error:
        raise ConfigError(
            f"{error}; the shard is damaged, so run it again in a new --workdir"
        ) from None


def _check_same_config(shard_dirs: list[str], configs: list[dict]) -> None:
    first = configs[0]
    for shard_dir, config in zip(shard_dirs[1:], configs[1:], strict=True):
        if config != first:
            changed = sorted(
                key
                for key in set(first) | set(config)
                if first.get(key) != config.get(key)
            )
            raise ConfigError(
                f"shard {shard_dir!r} ran another experiment config than "
                f"{shard_dirs[0]!r} (keys {changed} differ); merge only shards "
                "of one grid"
            )


def _check_shards(shard_dirs: list[str], grids: list[dict]) -> str:
    """Raise unless the shards come from one --shard I/N split.

    Return a note for the top of results.md that names the missing shards, or
    "" when every shard of the split is present.
    """
    counts = {tuple(grid["shard"])[1] for grid in grids}
    indices = sorted(tuple(grid["shard"])[0] for grid in grids)
    if len(counts) != 1:
        found = ", ".join(
            f"{d!r} is shard {grid['shard'][0]}/{grid['shard'][1]}"
            for d, grid in zip(shard_dirs, grids, strict=True)
        )
        raise ConfigError(
            f"the shards split the grid into different numbers of shards "
            f"({found}); merge shards of one --shard I/N split"
        )
    count = counts.pop()
    missing = sorted(set(range(count)) - set(indices))
    if not missing:
        return ""
    # Merging a subset is allowed, for a look at partial results.
    logger.warning(
        "merging shards %s of %d; shards %s are missing, so the merged results "
        "are incomplete",
        indices,
        count,
        missing,
    )
    return (
        f"Incomplete: shards {missing} of {count} are missing, so these tables "
        f"cover only the cells of shards {indices}."
    )


def _check_out_dir(out_dir: str, shard_dirs: list[str], config: dict, overwrite: bool):
    """Raise unless writing the merged results to `out_dir` replaces only an
    earlier merge of the same experiment config (or anything, with
    `overwrite`)."""
    real = os.path.realpath(out_dir)
    for shard_dir in shard_dirs:
        if os.path.realpath(shard_dir) == real:
            raise ConfigError(
                f"output directory {out_dir!r} is also a shard directory; "
                "give the merged results a directory of their own"
            )
    if os.path.isfile(os.path.join(out_dir, GRID_FILE)):
        raise ConfigError(
            f"output directory {out_dir!r} contains the run of a grid "
            f"({GRID_FILE}); give the merged results a directory of their own"
        )
    if overwrite:
        return
    if os.path.isfile(os.path.join(out_dir, MERGED_FILE)):
        # A merge missing its config.json counts as one of another config.
        earlier_path = os.path.join(out_dir, "config.json")
        earlier = _read_json(earlier_path) if os.path.isfile(earlier_path) else None
        if earlier != config:
            raise ConfigError(
                f"output directory {out_dir!r} contains merged results of "
                "another experiment config; pass --overwrite to replace them "
                "or choose another directory"
            )
        return
    found = [
        name for name in REPORT_FILES if os.path.exists(os.path.join(out_dir, name))
    ]
    if found:
        raise ConfigError(
            f"output directory {out_dir!r} already contains {found} that no "
            "merge wrote; pass --overwrite to replace them or choose another "
            "directory"
        )


def _in_grid_order(rows: list[dict], config: dict) -> list[dict]:
    """Sort rows by seed, then strategies in config order before baselines,
    which is the order of an unsharded run, so results.md lists the methods
    the same way."""
    strategies = list(config.get("strategies", {}))

    def key(row):
        method = row["method"]
        rank = strategies.index(method) if method in strategies else len(strategies)
        return (row["seed"], rank)

    return sorted(rows, key=key)


@dataclasses.dataclass
class MergePlan:
    """Checked inputs of one merge, ready to be written by `write_merge`."""

    out_dir: str
    shard_dirs: list[str]
    config: dict
    experiment: str
    rows: list[dict]
    incomplete: str  # a note naming missing shards, or ""


def plan_merge(
    out_dir: str, shard_dirs: list[str], *, overwrite: bool = False
) -> MergePlan:
    """Read and check the shards and `out_dir`, writing nothing.

    Raises ConfigError when the shards ran different experiment configs,
    when two shards contain a row for the same (dataset, method, budget,
    seed), or when `out_dir` is a shard or grid workdir or, unless
    `overwrite`, contains results of another config.
    """
    if not shard_dirs:
        raise ConfigError("merge needs at least one shard directory")
    out_dir = check_workdir(out_dir)
    configs = [_read_json(os.path.join(d, "config.json")) for d in shard_dirs]
    grids = [_read_json(os.path.join(d, GRID_FILE)) for d in shard_dirs]
    _check_same_config(shard_dirs, configs)
    _check_out_dir(out_dir, shard_dirs, configs[0], overwrite)
    incomplete = _check_shards(shard_dirs, grids)

    rows, origin = [], {}
    for shard_dir in shard_dirs:
        for row in read_csv(os.path.join(shard_dir, "results.csv")):
            key = row_key(row)
            if key in origin:
                raise ConfigError(
                    f"duplicate result for (dataset, method, label_budget, seed) "
                    f"= {key}: in {origin[key]!r} and {shard_dir!r}; pass each "
                    "shard once"
                )
            origin[key] = shard_dir
            rows.append(row)
    return MergePlan(
        out_dir,
        [os.path.abspath(d) for d in shard_dirs],
        configs[0],
        grids[0].get("experiment"),
        _in_grid_order(rows, configs[0]),
        incomplete,
    )


def write_merge(plan: MergePlan) -> list[dict]:
    """Write the merged results.csv, results.md and plots of `plan`."""
    os.makedirs(plan.out_dir, exist_ok=True)
    write_json(os.path.join(plan.out_dir, "config.json"), plan.config)
    write_json(os.path.join(plan.out_dir, MERGED_FILE), {"shards": plan.shard_dirs})
    write_csv(os.path.join(plan.out_dir, "results.csv"), plan.rows)
    datasets = list(dict.fromkeys(row["dataset"] for row in plan.rows))
    title = report_title(plan.experiment, datasets)
    chart = plan.config.get("transfer_chart")
    write_report(
        plan.rows, plan.out_dir, title, transfer_chart=chart, preamble=plan.incomplete
    )
    return plan.rows


def merge_shards(
    out_dir: str, shard_dirs: list[str], *, overwrite: bool = False
) -> list[dict]:
    """Merge shard results into `out_dir` (results.csv, results.md, plot).

    Every check of `plan_merge` runs before anything is written.
    """
    return write_merge(plan_merge(out_dir, shard_dirs, overwrite=overwrite))
