"""`experiments NAME --workdir DIR [--config.KEY=VALUE ...]`."""

import argparse
import logging
import sys

from pretrain import config as config_lib
from pretrain.cli_common import (
    add_common_arguments,
    run_command,
    setup_logging,
    split_overrides,
)


def build_parser() -> argparse.ArgumentParser:
    from experiments.grid import experiment_names

    parser = argparse.ArgumentParser(
        prog="experiments",
        description="Run a named experiment grid and write results.csv, "
        "results.md and a plot.",
    )
    parser.add_argument("name", help=f"one of {experiment_names()}")
    add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    setup_logging(args.verbose)
    if not args.verbose:
        # A grid runs hundreds of stages; keep one line per run in the log.
        for name in ("finetune", "pretrain"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def body():
        from experiments.grid import load_experiment, run_grid
        from experiments.report import write_report

        config = config_lib.build_config(
            lambda: load_experiment(args.name),
            file=args.config,
            overrides=split_overrides(extra),
            open_sections=("pretrain", "finetune"),
        )
        rows = run_grid(config, args.workdir)
        print(
            write_report(
                rows, args.workdir, f"experiment {args.name} on {config.dataset}"
            )
        )

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
