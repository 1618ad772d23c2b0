"""Run every benchmark in one process and print its figures.

    python -m experiments.benchmarks [--quick] [--only NAME ...] [--data-dir DIR]

Sections:

- roofline: FLOP/s of four training steps against the matmul figure;
- peers: scikit-learn's RBM, and the denoising autoencoder layer in NumPy
  and PyTorch;
- compilation: compiles per phase of a pretraining and a fine-tuning run;
- growth: seconds per epoch against examples and width;
- memory: peak RSS against dataset size.

--quick runs tiny sizes, to check that everything runs. Its figures are not
for docs/benchmarks.md.
"""

import argparse
import os
import tempfile
import time
from dataclasses import dataclass

from experiments.benchmarks import compilation, growth, memory, peers, rbm, roofline
from experiments.benchmarks.common import machine_lines, mnist5k_pool


@dataclass(frozen=True)
class Sizes:
    steps: int  # steps per timed epoch of the roofline
    repeats: int  # timed epochs (or matmuls) whose median is printed
    roofline_rounds: int  # interleaved matmul and step timings per roofline case
    rbm_epochs: int
    rbm_rounds: int
    pipeline_epochs: int  # per layer and per stage of the compilation runs
    examples: tuple[int, ...]
    widths: tuple[int, ...]
    width_examples: int
    memory_sizes: tuple[int, ...]


FULL = Sizes(
    steps=20,
    repeats=5,
    roofline_rounds=5,
    rbm_epochs=5,
    rbm_rounds=3,
    pipeline_epochs=5,
    examples=(1000, 2000, 4000, 8000),
    widths=(125, 250, 500, 1000),
    width_examples=4000,
    memory_sizes=(8000, 16000, 32000, 64000),
)
QUICK = Sizes(
    steps=2,
    repeats=1,
    roofline_rounds=1,
    rbm_epochs=1,
    rbm_rounds=1,
    pipeline_epochs=1,
    examples=(256, 512, 1024, 2048),
    widths=(32, 64, 128, 256),
    width_examples=512,
    memory_sizes=(1000, 2000, 4000),
)
SECTIONS = ("roofline", "peers", "compilation", "growth", "memory")


def run_section(name: str, sizes: Sizes, data_dir: str, workdir: str) -> None:
    if name == "roofline":
        roofline.run(sizes.steps, sizes.repeats, sizes.roofline_rounds)
    elif name == "peers":
        rbm.speed(data_dir, sizes.rbm_epochs, sizes.rbm_rounds)
        peers.run_autoencoder(mnist5k_pool(data_dir), sizes.repeats)
    elif name == "compilation":
        compilation.run(data_dir, workdir, sizes.pipeline_epochs)
    elif name == "growth":
        growth.run(
            list(sizes.examples),
            list(sizes.widths),
            sizes.width_examples,
            sizes.repeats,
        )
    elif name == "memory":
        memory.run(list(sizes.memory_sizes), data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, help="run only these sections"
    )
    parser.add_argument("--data-dir", help="TFDS data directory (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    print("\n".join(machine_lines()))
    print(f"sizes: {'quick' if args.quick else 'full'}")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "tfds")
        for name in args.only or SECTIONS:
            print(f"\n== {name}")
            start = time.perf_counter()
            run_section(name, sizes, data_dir, os.path.join(tmp, name))
            print(f"({name}: {time.perf_counter() - start:.0f} s)")
    print("\nload average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
