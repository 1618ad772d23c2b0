"""Run provenance: package versions, git commit, machine and time."""

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys

import jax

PACKAGES = (
    "pretrain-jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "numpy",
    "scikit-learn",
)


def git_commit() -> str | None:
    """Return the commit of the checkout this code runs from, or None outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def provenance() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "packages": versions,
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
        "machine": {
            "host": platform.node(),
            "platform": platform.platform(),
            "processor": platform.machine(),
            "jax_backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "process_count": jax.process_count(),
        },
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
