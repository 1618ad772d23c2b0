"""The `finetune` command.

finetune --encoder DIR --dataset NAME --labels N --workdir DIR
         [--preset P] [--config FILE] [--config.KEY=VALUE ...]
"""

import argparse
import sys

from pretrain import config as config_lib
from pretrain.cli_common import (
    add_common_arguments,
    add_flag_values,
    initialize_distributed,
    run_command,
    setup_logging,
    split_overrides,
)
from pretrain.data import EMBEDDED_DATASETS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Fine-tune an exported encoder with a task head, in stages.",
        epilog="Any config key can be set with --config.KEY=VALUE.",
    )
    parser.add_argument("--encoder", help="export directory written by `pretrain`")
    parser.add_argument(
        "--dataset",
        help=f"an embedded dataset ({', '.join(EMBEDDED_DATASETS)}) or a TFDS "
        "catalog name; sets config.dataset",
    )
    parser.add_argument("--labels", help="label budget: a count, or all")
    parser.add_argument(
        "--preset", help="linear_probe, gradual (default), full or scratch"
    )
    add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    setup_logging(args.verbose)

    def body():
        initialize_distributed(args.distributed)
        from finetune.run import default_config, run

        overrides = split_overrides(extra)
        keys = ("encoder", "dataset", "labels", "preset")
        add_flag_values(overrides, {key: getattr(args, key) for key in keys})
        config = config_lib.build_config(
            default_config, file=args.config, overrides=overrides
        )
        run(config, args.workdir, overwrite=args.overwrite)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
