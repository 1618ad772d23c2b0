"""Pieces shared by the `pretrain`, `finetune` and `experiments` commands."""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pretrain.config import ConfigError, parse_value
from pretrain.data import DatasetError
from pretrain.encoders import SpecError
from pretrain.export import ExportError
from pretrain.methods import MethodError
from pretrain.workdir import WorkdirError

logger = logging.getLogger(__name__)

# Set in every process of a multi-process run: the coordinator's host:port,
# the process count and this process's index. Any of them, or --distributed,
# turns on `jax.distributed.initialize`.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")

# Errors caused by the user's input: reported in one line with exit status 2.
USER_ERRORS = (
    ConfigError,
    DatasetError,
    SpecError,
    ExportError,
    MethodError,
    WorkdirError,
)


def split_overrides(extra: Sequence[str]) -> dict[str, object]:
    """Turn `--config.KEY=VALUE` and `--config.KEY VALUE` arguments into a dict."""
    overrides = {}
    items = list(extra)
    while items:
        item = items.pop(0)
        if not item.startswith("--config."):
            raise ConfigError(
                f"unrecognized argument {item!r}; config values are set as "
                "--config.KEY=VALUE"
            )
        key, sep, value = item[len("--config.") :].partition("=")
        if not sep:
            if not items:
                raise ConfigError(f"{item} needs a value: --config.{key}=VALUE")
            value = items.pop(0)
        overrides[key] = parse_value(value)
    return overrides


def add_flag_values(overrides: dict[str, object], flags: dict[str, object]) -> None:
    """Add the values of named flags (`--dataset NAME`) to `overrides`.

    A flag that is not given (None) adds nothing. A flag and a
    `--config.KEY` that set one key to different values raise ConfigError,
    because neither is plainly the one the user meant.
    """
    for key, value in flags.items():
        if value is None:
            continue
        if key in overrides and str(overrides[key]) != str(value):
            raise ConfigError(
                f"--{key} {value!r} and --config.{key}={overrides[key]!r} "
                "disagree. Give only one of them, or the same value in both"
            )
        overrides[key] = value


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # orbax and absl log every save at INFO; keep the run log readable.
    for name in ("absl", "orbax", "jax._src"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # After a failed read of a corrupted checkpoint, orbax (0.12.8) leaves an
    # asyncio task whose exception it already raised to us; asyncio logs it
    # again, with a traceback, whenever that task is garbage-collected.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def add_common_arguments(
    parser: argparse.ArgumentParser, *, overwrite: bool = True
) -> None:
    """Add --workdir, --config, --verbose, --distributed and, unless
    `overwrite` is False, --overwrite."""
    parser.add_argument("--workdir", required=True, help="directory for the outputs")
    parser.add_argument(
        "--config",
        help="config file: a .py file defining get_config(), or a saved config.json",
    )
    if overwrite:
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace a run with a different config in --workdir",
        )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first, for one process per "
        "host or accelerator of a cluster; implied by any of "
        + ", ".join(f"${name}" for name in DISTRIBUTED_ENV),
    )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"${name} = {value!r} is invalid: use a non-negative integer"
        ) from None


def check_distributed_arguments(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Raise ConfigError for values that jax.distributed.initialize would
    reject with a traceback or, for a bad port, a crash."""
    if num_processes is not None and num_processes < 1:
        raise ConfigError(
            f"$JAX_NUM_PROCESSES = {num_processes} is invalid: use the number of "
            "processes of the run, 1 or more"
        )
    if process_id is not None and process_id < 0:
        raise ConfigError(
            f"$JAX_PROCESS_ID = {process_id} is invalid: use a non-negative integer"
        )
    if None not in (num_processes, process_id) and process_id >= num_processes:
        raise ConfigError(
            f"$JAX_PROCESS_ID = {process_id} is invalid with $JAX_NUM_PROCESSES = "
            f"{num_processes}: use 0 to {num_processes - 1}"
        )
    if coordinator_address is not None:
        _, _, port = coordinator_address.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"$JAX_COORDINATOR_ADDRESS = {coordinator_address!r} is invalid: "
                "use HOST:PORT with a port from 1 to 65535, the address of process 0"
            )


def initialize_distributed(requested: bool) -> bool:
    """Call `jax.distributed.initialize` when `requested` or a `DISTRIBUTED_ENV`
    variable is set; return whether it was called.

    It must run before any JAX computation. Values missing from the
    environment are left to JAX, which detects them on SLURM, Open MPI and
    Cloud TPU. Every process of a run must then get the same arguments,
    including the same `--workdir` on a filesystem they all see.
    """
    if not requested and not any(os.environ.get(name) for name in DISTRIBUTED_ENV):
        return False
    import jax

    arguments = {
        "coordinator_address": os.environ.get("JAX_COORDINATOR_ADDRESS") or None,
        "num_processes": _env_int("JAX_NUM_PROCESSES"),
        "process_id": _env_int("JAX_PROCESS_ID"),
    }
    check_distributed_arguments(**arguments)
    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        # CPU processes need a collectives backend for the gradient
        # all-reduce, and gloo ships with jaxlib. GPU and TPU ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if arguments["num_processes"] is not None:
        # jax.distributed.initialize waits for every process to connect; its
        # default timeout (jax 0.10.2) is 300 s, and it logs nothing before.
        logger.info(
            "process %s waiting for %d processes at %s",
            arguments["process_id"],
            arguments["num_processes"],
            arguments["coordinator_address"] or "the detected coordinator",
        )
    jax.distributed.initialize(**arguments)
    logger.info(
        "distributed run: process %d of %d, %d devices in all",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
    )
    return True


def run_command(body: Callable[[], object]) -> int:
    """Run a command body; user errors print one line and return exit status 2."""
    try:
        body()
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # a non-finite loss; the message has the step
        print(f"error: training diverged: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not _lost_other_process(error):
            raise
        print(
            "error: this process stopped because another process of the run "
            f"stopped or failed first; see that process's log ({_first_line(error)})",
            file=sys.stderr,
        )
        return 1
    return 0


def _lost_other_process(error: Exception) -> bool:
    """Return whether `error` is a failed collective of a multi-process run,
    which is what a process gets when another one exits early."""
    import jax

    from pretrain.multihost import PrimaryProcessError

    if isinstance(error, PrimaryProcessError):
        return True
    return isinstance(error, jax.errors.JaxRuntimeError) and jax.process_count() > 1


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
