"""Peak resident memory of a pretraining run as its dataset grows.

By default `pretrain.data.load_dataset` reads a whole split into one NumPy
array and `pretrain.train.fit` copies the pool onto the device for
`lax.scan`, so a run needs memory in proportion to its dataset. With
`--config.stream=True` the pool stays in the array_record files and each
step reads its batch. This benchmark generates `bench_images`, a TFDS
dataset of random 28x28 images, in a temporary directory at several sizes.
It runs a 1-epoch `pretrain ae` on each, in memory and streamed, in a fresh
process, and prints the process's peak resident set size (VmHWM).

Then it runs the largest size both ways again under an address-space limit
(RLIMIT_AS) of `--cap-mib`, by default the streamed run's peak virtual size
plus a quarter of the dataset's float32 size. The cap leaves the run less
room than the pool would take in memory, so the streamed run should finish
and the in-memory run should fail; the last line it printed says how. At
small sizes the room is small too, so the capped runs mean something at
32,000 examples and more.

    python -m experiments.benchmarks.memory [--sizes 2000 4000 8000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SHAPE = (28, 28, 1)
SIZES = (1000, 2000, 4000, 8000, 16000, 32000, 64000)
FLOAT32_EXAMPLE_BYTES = 4 * int(np.prod(IMAGE_SHAPE))


class BenchImages(tfds.core.GeneratorBasedBuilder):
    """Random uint8 28x28x1 images with labels 0..9, in sizes `n{count}`."""

    name = "bench_images"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Random images for the memory benchmark."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=f"n{n}", description=f"{n} random images")
        for n in SIZES
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description="Random images for the memory benchmark.",
            features=features,
            supervised_keys=("image", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        return {"train": self._generate_examples(int(self.builder_config.name[1:]))}

    def _generate_examples(self, count: int):
        rng = np.random.default_rng(count)
        for index in range(count):
            image = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
            yield index, {"image": image, "label": index % 10}


def prepare(size: int, data_dir: str) -> str:
    """Generate `bench_images/n{size}` in `data_dir`; return the dataset name."""
    name = f"bench_images/n{size}"
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        # The data is generated here; no GCS lookup, no download.
        config = tfds.download.DownloadConfig(try_download_gcs=False)
        builder.download_and_prepare(file_format="array_record", download_config=config)
    return name


def peak_kib(field: str = "VmHWM") -> int:
    """Return a peak from /proc/self/status in KiB: resident (VmHWM) or
    virtual (VmPeak); without /proc, ru_maxrss for either."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def worker(dataset: str, data_dir: str, workdir: str, stream: bool, cap_mib: int):
    """Run one small pretraining and print its peaks as JSON."""
    if cap_mib:
        cap = cap_mib * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from pretrain import config as config_lib
    from pretrain.run import default_config, run

    config = config_lib.build_config(
        lambda: default_config("ae"),
        overrides={
            "dataset": dataset,
            "data_dir": data_dir,
            "hidden": (64,),
            "epochs": 1,
            "batch_size": 256,
            "stream": stream,
        },
    )
    before = peak_kib()
    run("ae", config, workdir)
    print(
        json.dumps(
            {"before_kib": before, "peak_kib": peak_kib(), "vm_kib": peak_kib("VmPeak")}
        )
    )


# Seconds before a worker is stopped. Under a cap, a worker whose background
# threads cannot start may hang instead of failing.
WORKER_TIMEOUT = 600


def measure(
    size: int, data_dir: str, workdir: str, stream: bool, cap_mib: int = 0
) -> dict:
    """Peaks of one worker run. Under a cap a failed run gives {"failed":
    the last line it printed}."""
    dataset = prepare(size, data_dir)
    mode = "stream" if stream else "memory"
    command = [
        sys.executable,
        "-m",
        "experiments.benchmarks.memory",
        "--worker",
        dataset,
        "--data-dir",
        data_dir,
        "--workdir",
        os.path.join(workdir, f"n{size}_{mode}_cap{cap_mib}"),
        "--cap-mib",
        str(cap_mib),
    ] + (["--stream"] if stream else [])
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=WORKER_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        if cap_mib:
            return {"failed": f"no result within {WORKER_TIMEOUT} s"}
        raise
    if done.returncode != 0:
        if cap_mib:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            return {"failed": lines[-1][-200:]}
        raise RuntimeError(
            f"memory worker for {dataset} failed:\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(sizes: list[int], data_dir: str | None = None, cap_mib: int = 0) -> None:
    """Print the peak RSS of a 1-epoch `pretrain ae` run for each size and
    mode, then the capped runs of the largest size."""
    unknown = sorted(set(sizes) - set(SIZES))
    if unknown:
        raise ValueError(f"sizes {unknown} have no bench_images config; use {SIZES}")
    if len(sizes) < 2:
        raise ValueError("give at least two sizes, to measure the growth between them")
    sizes = sorted(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = data_dir or os.path.join(tmp, "tfds")
        rows = {
            stream: [(n, measure(n, data_dir, tmp, stream)) for n in sizes]
            for stream in (False, True)
        }
        largest = sizes[-1]
        pool_mib = largest * FLOAT32_EXAMPLE_BYTES / 2**20
        if not cap_mib:
            cap_mib = int(rows[True][-1][1]["vm_kib"] / 1024 + pool_mib / 4)
        capped = {
            stream: measure(largest, data_dir, tmp, stream, cap_mib)
            for stream in (False, True)
        }

    print(
        "peak RSS of a 1-epoch `pretrain ae` (hidden 64) on bench_images "
        f"(28x28x1; one float32 example is {FLOAT32_EXAMPLE_BYTES} bytes):"
    )
    for stream in (False, True):
        print("  streamed (--config.stream=True):" if stream else "  in memory:")
        _print_rows(rows[stream])
    print(
        f"  under RLIMIT_AS = {cap_mib} MiB, {largest} examples "
        f"({pool_mib:.0f} MiB as float32):"
    )
    room = cap_mib - rows[True][-1][1]["vm_kib"] / 1024
    print(f"    (room beyond the streamed run's peak virtual size: {room:.0f} MiB)")
    for stream in (False, True):
        result = capped[stream]
        if "failed" in result:
            outcome = f"failed: {result['failed']}"
        else:
            outcome = f"finished, peak RSS {result['peak_kib'] / 1024:.1f} MiB"
        print(f"    {'streamed' if stream else 'in memory'}: {outcome}")


def _print_rows(rows: list[tuple[int, dict]]) -> None:
    print(
        "    examples | peak MiB | after imports MiB | peak virtual MiB | "
        "bytes per example added since the smallest size"
    )
    first_n, first = rows[0]
    for n, row in rows:
        growth = ""
        if n > first_n:
            per_example = (row["peak_kib"] - first["peak_kib"]) * 1024 / (n - first_n)
            ratio = per_example / FLOAT32_EXAMPLE_BYTES
            growth = f"{per_example:,.0f} ({ratio:.2f} float32 copies)"
        print(
            f"    {n:8d} | {row['peak_kib'] / 1024:8.1f} | "
            f"{row['before_kib'] / 1024:17.1f} | {row['vm_kib'] / 1024:16.1f} | "
            f"{growth}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000])
    parser.add_argument("--data-dir", help="TFDS directory (default: a temp dir)")
    parser.add_argument(
        "--cap-mib", type=int, default=0, help="RLIMIT_AS of the capped runs"
    )
    parser.add_argument("--worker", metavar="DATASET", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data_dir, args.workdir, args.stream, args.cap_mib)
        return
    try:
        run(args.sizes, args.data_dir, args.cap_mib)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
