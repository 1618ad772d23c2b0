"""The `pretrain` command.

pretrain METHOD --dataset NAME --workdir DIR
         [--config FILE] [--config.KEY=VALUE ...]
"""

import argparse
import sys
from typing import Any

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
from pretrain.methods import all_methods


def build_parser() -> argparse.ArgumentParser:
    methods = all_methods()
    parser = argparse.ArgumentParser(
        prog="pretrain",
        description="Pretrain an encoder without labels and export it.",
        epilog="methods: "
        + "; ".join(f"{m.name}: {m.description}" for m in methods.values())
        + ". Any config key can be set with --config.KEY=VALUE.",
    )
    parser.add_argument("method", help=f"one of {sorted(methods)}")
    parser.add_argument(
        "--dataset",
        help=f"an embedded dataset ({', '.join(EMBEDDED_DATASETS)}) or a TFDS "
        "catalog name; sets config.dataset",
    )
    add_common_arguments(parser)
    return parser


def config_file(path: str, method: str) -> dict[str, Any]:
    """Read `--config FILE` for `method`, accepting a run's saved config.json.

    A saved config.json names its method next to the config keys; the name
    must match the method on the command line and is then dropped.
    """
    values = config_lib.load_config_file(path)
    saved = values.pop("method", None)
    if saved is not None and saved != method:
        raise config_lib.ConfigError(
            f"config file {path!r} is for method {saved!r}, not {method!r}: "
            f"run `pretrain {saved} --config {path}`"
        )
    return values


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    setup_logging(args.verbose)

    def body():
        initialize_distributed(args.distributed)
        from pretrain.methods import get_method
        from pretrain.run import default_config, run

        get_method(args.method)
        overrides = split_overrides(extra)
        add_flag_values(overrides, {"dataset": args.dataset})
        file = None if args.config is None else config_file(args.config, args.method)
        config = config_lib.build_config(
            lambda: default_config(args.method), file=file, overrides=overrides
        )
        run(args.method, config, args.workdir, overwrite=args.overwrite)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
