"""`run(method, config, workdir)`: the whole pretraining job behind the CLI."""

import logging
import os

import jax
import ml_collections
import numpy as np

from pretrain import config as config_lib
from pretrain import pictures
from pretrain.checkpoint import checkpoint_root
from pretrain.code_stats import (
    code_statistics,
    collapse_message,
    encode,
    save_code_stats,
)
from pretrain.config import ConfigError
from pretrain.data import EMBEDDED_DATASETS, DatasetError, fit_scaler
from pretrain.data.loading import load_dataset_process_0_first
from pretrain.data.scaling import Scaler, fit_scaler_chunks
from pretrain.export import save_encoder, save_safetensors
from pretrain.methods import PretrainContext, all_methods, get_method
from pretrain.metrics import MetricWriter
from pretrain.multihost import is_primary
from pretrain.provenance import provenance
from pretrain.rng import DEFAULT_RNG_IMPL, RNG_IMPLS, draw_rng_impl
from pretrain.workdir import (
    check_workdir,
    remove_run_outputs,
    start_run,
    write_provenance,
)

logger = logging.getLogger(__name__)

# Penalty weights that can flatten an encoder's codes when set too high.
PENALTY_KEYS = ("contractive_weight", "sparsity_weight")

# Test rows whose codes `finetune --preset auto` compares with, when streaming.
CODE_STATS_ROWS = 4096


def common_config() -> ml_collections.ConfigDict:
    """Keys that every pretraining method shares."""
    config = ml_collections.ConfigDict()
    config.dataset = "digits"  # an embedded dataset or any TFDS catalog name
    config.data_dir = (
        ""  # TFDS data directory; empty means $TFDS_DATA_DIR or ~/tensorflow_datasets
    )
    config.split_seed = 0  # fixes the test split
    config.seed = 0  # initialisation, noise and data order
    config.scaling = "minmax"  # fitted on the training pool: minmax or standard
    config.scan = True  # run each epoch as one compiled lax.scan (data on device)
    # Read batches from the TFDS files each step instead of loading the pool
    # into memory (dense autoencoder methods). It implies per-batch steps.
    config.stream = False
    config.drop_remainder = False  # drop the last partial batch instead of padding it
    config.safetensors = False  # also write encoder/weights.safetensors
    # Epochs between checkpoints; 0 keeps only the one at the end of a phase.
    config.checkpoint_every = 5
    # The PRNG behind training noise, masks, Gibbs draws and data order
    # (pretrain.rng explains the default).
    config.rng_impl = DEFAULT_RNG_IMPL
    return config


def default_config(method: str) -> ml_collections.ConfigDict:
    config = common_config()
    config.update(get_method(method).defaults())
    return config


def check_common(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(config.epochs > 0, "epochs", config.epochs, "must be a positive int")
    check(0 <= config.seed < 2**32, "seed", config.seed, "must be in [0, 2**32)")
    check(
        config.checkpoint_every >= 0,
        "checkpoint_every",
        config.checkpoint_every,
        "must be >= 0",
    )
    check(config.batch_size > 0, "batch_size", config.batch_size, "must be positive")
    check(
        config.learning_rate > 0,
        "learning_rate",
        config.learning_rate,
        "must be positive",
    )
    config_lib.check_choice(config, "scaling", ("minmax", "standard"))
    check(
        config.rng_impl in RNG_IMPLS,
        "rng_impl",
        config.rng_impl,
        "use one of " + ", ".join(RNG_IMPLS),
    )


def run(
    method: str,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    overwrite: bool = False,
) -> str:
    """Pretrain `method` on `config.dataset` and export the encoder.

    Writes `workdir/encoder/` (the export), `workdir/config.json`,
    `workdir/provenance.json`, `workdir/metrics.jsonl`, TensorBoard files in
    `workdir/tb/`, checkpoints in `workdir/checkpoints/` and pictures. Run
    again on the same workdir and config, it resumes from the last
    checkpoint; a different config needs `overwrite`. Returns the export
    directory.
    """
    trainer_method = get_method(method)
    check_stream(method, config)
    if trainer_method.run is not None:
        return trainer_method.run(config, workdir, overwrite=overwrite)
    check_common(config)
    trainer_method.check_config(config)
    # config.json then records the generator the run draws with, so a resume
    # on a device count that would change it is a different config.
    config.rng_impl = draw_rng_impl(config.rng_impl)
    workdir = check_workdir(workdir)
    dataset = load_dataset_process_0_first(
        config.dataset,
        split_seed=config.split_seed,
        data_dir=config.data_dir or None,
        stream=config.stream,
    )

    # The streamed splits are read here, before the workdir is written, so
    # that bad values in them leave nothing behind.
    stream_scaler = _fit_streamed_scaler(dataset, config) if config.stream else None

    saved_config = {"method": method, **config_lib.to_dict(config)}
    created = not os.path.exists(workdir)
    resumed = start_run(workdir, saved_config, overwrite=overwrite)
    if resumed:
        logger.info("resuming the run in %s", workdir)
    run_provenance = provenance()
    write_provenance(
        workdir,
        {**run_provenance, "seed": config.seed, "method": method},
        resumed=resumed,
    )

    if config.stream:
        scaler = stream_scaler
        x = dataset.train_x.map(scaler.apply)
    else:
        scaler = fit_scaler(dataset.train_x, config.scaling)
        x = scaler.apply(dataset.train_x)
    logger.info(
        "pretraining %s on %s: %d examples of shape %s",
        method,
        dataset.name,
        len(x),
        dataset.input_shape,
    )
    writer = MetricWriter(workdir)
    try:
        context = PretrainContext(
            config=config,
            x=x,
            unit_range=config.scaling == "minmax",
            rng=jax.random.key(config.seed),
            writer=writer,
            workdir=workdir,
        )
        checkpoints = os.path.join(workdir, "checkpoints")
        with checkpoint_root(checkpoints, every=config.checkpoint_every):
            trained = trainer_method.pretrain(context)
    except (ConfigError, DatasetError):
        # Some checks need the data (an input shape, a value range) and run
        # inside the method; a fresh run they reject leaves nothing behind.
        if not resumed:
            writer.close()
            remove_run_outputs(workdir, remove_empty=created)
        raise
    finally:
        writer.close()

    export_dir = os.path.join(workdir, "encoder")
    save_encoder(
        export_dir,
        trained.module,
        spec=trained.spec,
        scaler=scaler,
        method=method,
        config=saved_config,
        seed=config.seed,
        provenance=run_provenance,
    )
    if config.safetensors:
        save_safetensors(
            trained.module, os.path.join(export_dir, "weights.safetensors")
        )
    # A streamed test split may not fit in memory, so its first rows stand in.
    test_x = dataset.test_x[:CODE_STATS_ROWS] if config.stream else dataset.test_x
    penalties = tuple(name for name in PENALTY_KEYS if config.get(name, 0) > 0)
    _save_code_stats(
        trained.module, scaler.apply(test_x), dataset, export_dir, penalties
    )
    _save_pictures(trained, dataset.input_shape, workdir)
    if is_primary():
        logger.info("wrote the encoder export to %s", export_dir)
    return export_dir


def _fit_streamed_scaler(dataset, config: ml_collections.ConfigDict) -> Scaler:
    """Fit the scaler on the streamed training split in one pass.

    It also checks the test rows that the code statistics use. Its errors name
    the dataset and the split.
    """
    try:
        scaler = fit_scaler_chunks(dataset.train_x.chunks(), config.scaling)
    except DatasetError as error:
        raise DatasetError(f"dataset {dataset.name!r} (train split): {error}") from None
    if not np.all(np.isfinite(dataset.test_x[:CODE_STATS_ROWS])):
        raise DatasetError(
            f"dataset {dataset.name!r} (test split) contains non-finite image "
            "values (NaN or inf). Fix or remove those examples."
        )
    return scaler


def check_stream(method: str, config: ml_collections.ConfigDict) -> None:
    """Raise ConfigError for --config.stream on a method that cannot stream."""
    if not config.get("stream", False):
        return
    streaming = sorted(name for name, m in all_methods().items() if m.streams)
    config_lib.check(
        get_method(method).streams,
        "stream",
        config.stream,
        f"method {method} trains on a pool in memory; streaming works with "
        + ", ".join(streaming),
    )


def _save_code_stats(
    module, test_x, dataset, export_dir: str, penalties: tuple[str, ...]
) -> None:
    # The encoder never trained on the test split's images, and no labels are
    # read, so the statistics describe unseen pretraining data. `finetune
    # --preset auto` compares the target data with them.
    stats = code_statistics(encode(module, test_x))
    save_code_stats(export_dir, stats, dataset=dataset.name, split="test")
    message = collapse_message(stats, penalties)
    if message and is_primary():
        logger.warning("%s: %s", export_dir, message)


def _save_pictures(trained, input_shape, workdir: str) -> None:
    if trained.first_kernel is not None:
        # A convolution's filter covers a kernel window, not the whole input.
        filter_shape = trained.pictures.get("filter_shape", input_shape)
        pictures.save_filters(
            trained.first_kernel, filter_shape, os.path.join(workdir, "filters.png")
        )
    if "reconstructions" in trained.pictures:
        inputs, outputs = trained.pictures["reconstructions"]
        pictures.save_reconstructions(
            np.asarray(inputs),
            np.asarray(outputs),
            input_shape,
            os.path.join(workdir, "reconstructions.png"),
        )


KNOWN_DATASETS_HELP = ", ".join(EMBEDDED_DATASETS)
