"""`experiments NAME --workdir DIR [--shard I/N] [--config.KEY=VALUE ...]` and
`experiments merge OUT_DIR SHARD_DIR...`."""

import argparse
import logging
import sys

from pretrain import config as config_lib
from pretrain.cli_common import (
    add_common_arguments,
    initialize_distributed,
    run_command,
    setup_logging,
    split_overrides,
)
from pretrain.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from experiments.grid import experiment_names

    parser = argparse.ArgumentParser(
        prog="experiments",
        description="Run a named experiment grid, or one shard of it, and write "
        "results.csv, results.md and a plot. A suite (low_label) runs its parts' "
        "grids one after another. `experiments merge OUT_DIR SHARD_DIR...` "
        "combines the results of shards.",
    )
    parser.add_argument("name", help=f"one of {experiment_names()}")
    # A grid never replaces a finished run of another config, so it takes no
    # --overwrite: a new --workdir is the way to rerun with changed settings.
    add_common_arguments(parser, overwrite=False)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="run shard I of N (I/N, 0 <= I < N): the cells whose index mod N "
        "is I, and the pretraining runs they need",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar on stderr"
    )
    return parser


def build_merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments merge",
        description="Combine the results.csv files of grid shards and write "
        "results.csv, results.md and the plot to OUT_DIR. Given the shards of "
        "a suite, merge each part into OUT_DIR/PART and write the suite's "
        "combined results.",
    )
    parser.add_argument("out_dir", help="directory for the merged results")
    parser.add_argument(
        "shard_dirs", nargs="+", help="the --workdir of each shard", metavar="SHARD_DIR"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace merged results of another experiment config in OUT_DIR",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def merge_main(argv: list[str]) -> int:
    args = build_merge_parser().parse_args(argv)
    setup_logging(args.verbose)

    def body():
        from experiments.merge import merge_shards
        from experiments.suite import merge_suite, read_suite

        if any(read_suite(d) for d in args.shard_dirs):
            print(merge_suite(args.out_dir, args.shard_dirs, overwrite=args.overwrite))
            return
        merge_shards(args.out_dir, args.shard_dirs, overwrite=args.overwrite)
        with open(f"{args.out_dir}/results.md") as f:
            print(f.read(), end="")

    return run_command(body)


def reject_multiple_processes() -> None:
    """Raise ConfigError when this command runs as one of several processes."""
    import jax

    if jax.process_count() == 1:
        return
    # TODO: run a grid across processes. Its pretrain and finetune runs would
    # work, but the grid reads back files it wrote (reused runs, probes,
    # results.csv), and in process 1 nothing waits for process 0 to write them.
    raise ConfigError(
        f"experiments ran as process {jax.process_index()} of "
        f"{jax.process_count()}, but a grid runs in one process only. To use "
        "several machines, run one process per machine with --shard I/N and its "
        "own --workdir, and combine the shards with `experiments merge`. To train "
        "one run across processes, use `pretrain` or `finetune` with one shared "
        "--workdir (docs/scaling.md)"
    )


def join_shard_values(argv: list[str]) -> list[str]:
    """Rewrite `--shard -1/2` as `--shard=-1/2`.

    argparse reads a value that starts with '-' as an option and stops with
    "expected one argument", so the value would never reach `parse_shard` and
    its message. A value that starts with '--' is left alone because it is the
    next option, and argparse then reports the missing value.
    """
    joined = []
    tokens = iter(argv)
    for token in tokens:
        if token != "--shard":
            joined.append(token)
            continue
        value = next(tokens, None)
        if value is not None and value.startswith("-") and not value.startswith("--"):
            joined.append(f"--shard={value}")
            continue
        joined.append(token)
        if value is not None:
            joined.append(value)
    return joined


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    args, extra = build_parser().parse_known_args(join_shard_values(argv))
    setup_logging(args.verbose)
    if not args.verbose:
        # A grid runs hundreds of stages; keep one line per run in the log.
        for name in ("finetune", "pretrain"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def body():
        if initialize_distributed(args.distributed):
            reject_multiple_processes()
        from experiments.grid import experiment_names, load_experiment, run_grid
        from experiments.plan import parse_shard
        from experiments.report import report_title, write_report
        from experiments.strategies import experiment_datasets
        from experiments.suite import run_suite, suite_parts

        shard = parse_shard(args.shard)
        if args.name in experiment_names() and suite_parts(args.name):
            print(
                run_suite(
                    args.name,
                    args.workdir,
                    file=args.config,
                    overrides=split_overrides(extra),
                    shard=shard,
                    progress=not args.quiet,
                ),
                end="",
            )
            return
        config = config_lib.build_config(
            lambda: load_experiment(args.name),
            file=args.config,
            overrides=split_overrides(extra),
            open_sections=("pretrain", "finetune"),
        )
        rows = run_grid(
            config,
            args.workdir,
            shard=shard,
            progress=not args.quiet,
            name=args.name,
        )
        title = report_title(args.name, list(experiment_datasets(config)))
        chart = config.get("transfer_chart")
        chart = None if chart is None else config_lib.to_dict(chart)
        print(write_report(rows, args.workdir, title, transfer_chart=chart))

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
