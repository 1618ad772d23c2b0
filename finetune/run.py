"""`run(config, workdir)`: staged fine-tuning of an exported encoder."""

import dataclasses
import logging
import os
from contextlib import nullcontext

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from finetune import auto, freezing, layer_decay
from finetune.augment import augment
from finetune.auto import AUTO_PRESET
from finetune.model import (
    MODEL_FORMAT_VERSION,
    Classifier,
    Head,
    HeadOnCodes,
    codes_fixed_in_training,
    drop_top_layers,
    head_spec,
)
from finetune.stages import PRESETS, Stage, encoder_units, schedule, stage_rules
from pretrain import config as config_lib
from pretrain.checkpoint import checkpoint_root, checkpoint_subdirectory, phase_saved
from pretrain.data import Scaler, fit_scaler, label_split, parse_budget
from pretrain.data.loading import load_dataset_process_0_first
from pretrain.encoders import build_encoder
from pretrain.export import ExportError, flat_state, load_encoder, write_weights_dir
from pretrain.metrics import MetricWriter
from pretrain.provenance import provenance
from pretrain.train import BestTracker, PhaseTrainer, fit, predict, weighted_mean
from pretrain.workdir import check_workdir, start_run, write_json, write_provenance

logger = logging.getLogger(__name__)

# Checkpoint subdirectory of the stages that train the head on codes.
ON_CODES = "head_on_codes"

SCALING_CHOICES = ("export", "refit")


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.encoder = ""  # export directory written by `pretrain`
    config.dataset = "digits"
    config.data_dir = ""  # TFDS data directory; empty means the TFDS default
    config.labels = "all"  # label budget: a number of labelled examples, or all
    config.split_seed = 0  # fixes the test split
    config.seed = 0  # label subset, head initialisation and data order
    config.preset = "gradual"  # linear_probe, gradual, full or scratch
    config.head_hidden = ()  # widths of MLP head layers; empty means linear
    # Standardise each code feature in front of the head, with the mean and
    # std of the labelled training codes at the start, fixed from then on.
    # A briefly pretrained sigmoid encoder gives codes that a head on the raw
    # codes fails to learn from, while a probe of standardised codes does.
    config.standardize_codes = False
    config.drop_top = 0  # drop this many top encoder layers before the head
    # Stage 1: head alone, encoder frozen. Conv encoders want 0.1: their
    # globally pooled features vary little (std 0.05 per feature against 0.29
    # for a ReLU dense encoder on digits), so at 1e-2 a linear probe at 100
    # labels is still far from converged after 60 epochs.
    config.lr_head = 1e-2
    config.lr_finetune = 1e-4  # later stages: head and unfrozen layers
    config.lr_scratch = 1e-3  # the scratch preset's single stage
    config.weight_decay = 0.0  # AdamW decoupled weight decay
    # Layer-wise learning-rate decay: each encoder layer trains at this factor
    # times the rate of the layer above (the top one: times the head's rate).
    # 1.0 turns it off.
    config.layer_decay = 1.0
    config.epochs_head = 60
    config.epochs_finetune = 30  # per unfreezing stage
    config.patience = 15  # epochs without a better validation accuracy
    config.batch_size = 32
    # Epochs between checkpoints; 0 keeps only the one at the end of a stage.
    config.checkpoint_every = 10
    config.release_batch_norm = False  # full only: train batch norm as usual
    # Multipliers of every stage's learning rate; the best on validation wins.
    config.lr_search = ()
    config.augment = False  # random shifts, rotations and noise of image inputs
    config.augment_shift = 1  # pixels
    config.augment_rotation = 10.0  # degrees
    config.augment_noise = 0.0  # std, in scaled input units
    # Run each epoch as one compiled lax.scan. XLA:CPU runs convolutions in a
    # scan body far slower than in a step compiled alone, so set false for
    # conv encoders on CPU.
    config.scan = True
    # Input scaling of the target data: "export" applies the export's fitted
    # scaler, "refit" fits a scaler of the same kind on the inputs of the whole
    # target training pool, labelled or not. Labels are never read for it.
    config.scaling = "export"
    # The auto preset (finetune.auto): fewer labelled training examples than
    # auto_few_labels count as few, and a code shift (mean standardised
    # difference of code means) up to auto_similarity_threshold as similar.
    config.auto_few_labels = 100
    config.auto_similarity_threshold = 0.2
    return config


def check_config(config: ml_collections.ConfigDict) -> None:
    check = config_lib.check
    check(bool(config.encoder), "encoder", config.encoder, "pass --encoder DIR")
    check(0 <= config.seed < 2**32, "seed", config.seed, "must be in [0, 2**32)")
    presets = (*PRESETS, AUTO_PRESET)
    check(config.preset in presets, "preset", config.preset, f"use one of {presets}")
    check(
        config.scaling in SCALING_CHOICES,
        "scaling",
        config.scaling,
        f"use one of {SCALING_CHOICES}",
    )
    check(
        config.auto_few_labels > 0,
        "auto_few_labels",
        config.auto_few_labels,
        "must be a positive int",
    )
    check(
        config.auto_similarity_threshold > 0,
        "auto_similarity_threshold",
        config.auto_similarity_threshold,
        "must be positive",
    )
    for key in ("lr_head", "lr_finetune", "lr_scratch"):
        check(config[key] > 0, key, config[key], "must be positive")
    check(config.weight_decay >= 0, "weight_decay", config.weight_decay, "must be >= 0")
    check(
        0 < config.layer_decay <= 1,
        "layer_decay",
        config.layer_decay,
        "must be in (0, 1]; 1.0 turns layer-wise decay off",
    )
    for key in ("epochs_head", "epochs_finetune", "batch_size", "patience"):
        check(config[key] > 0, key, config[key], "must be a positive int")
    check(
        config.checkpoint_every >= 0,
        "checkpoint_every",
        config.checkpoint_every,
        "must be >= 0",
    )
    check(config.drop_top >= 0, "drop_top", config.drop_top, "must be >= 0")
    check(
        all(isinstance(h, int) and h > 0 for h in config.head_hidden),
        "head_hidden",
        config.head_hidden,
        "widths must be positive ints; () gives a linear head",
    )
    check(
        all(m > 0 for m in config.lr_search),
        "lr_search",
        config.lr_search,
        "multipliers must be positive",
    )
    parse_budget(config.labels)


@dataclasses.dataclass
class Splits:
    train: dict[str, np.ndarray]  # "x" scaled [n, *shape], "y" int32 [n]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: int
    label_split: object
    scaler: Scaler | None = None  # the scaler applied to every "x"
    # The whole scaled training pool, kept only for the auto preset's choice.
    pool_x: np.ndarray | None = None


def prepare_data(config, scaler, input_shape) -> Splits:
    dataset = load_dataset_process_0_first(
        config.dataset, split_seed=config.split_seed, data_dir=config.data_dir or None
    )
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise ExportError(
            f"the encoder expects inputs of shape {tuple(input_shape)}, but "
            f"dataset {config.dataset!r} has shape {dataset.input_shape}; "
            "pretrain an encoder on this dataset"
        )
    split = label_split(
        dataset.train_y, parse_budget(config.labels), dataset.num_classes, config.seed
    )
    scaler = target_scaler(config, scaler, dataset.train_x)
    pool_x = scaler.apply(dataset.train_x)

    def subset(idx):
        return {"x": pool_x[idx], "y": dataset.train_y[idx].astype(np.int32)}

    return Splits(
        train=subset(split.train_idx),
        val=subset(split.val_idx),
        test={"x": scaler.apply(dataset.test_x), "y": dataset.test_y.astype(np.int32)},
        num_classes=dataset.num_classes,
        label_split=split,
        scaler=scaler,
        pool_x=pool_x if config.preset == AUTO_PRESET else None,
    )


def target_scaler(config, export_scaler: Scaler, pool_x: np.ndarray) -> Scaler:
    """Return the export's scaler, or with `scaling="refit"` one of the same
    kind fitted on the raw target training pool `pool_x`."""
    if config.scaling == "export":
        return export_scaler
    return fit_scaler(pool_x, export_scaler.kind)


def prepare_splits(config, loaded) -> Splits:
    """Read the dataset that the export's encoder takes: a text dataset for
    token encoders (`finetune.text`), an image or signal dataset otherwise."""
    # finetune.text imports Splits from this module.
    from finetune import text

    if text.takes_tokens(loaded.spec):
        return text.prepare_text_data(config, loaded)
    text.check_not_text_dataset(config, loaded)
    return prepare_data(config, loaded.scaler, loaded.spec["input_shape"])


def choose_auto_preset(config, loaded, splits: Splits) -> auto.AutoChoice | None:
    """Choose the preset for `auto` (finetune.auto); return None
    when the config names another preset."""
    if config.preset != AUTO_PRESET:
        return None
    labels = len(splits.train["y"])
    if splits.pool_x is None:
        # NOTE: text splits carry no scaled pool, so their codes are not
        # compared and the label count decides alone.
        return auto.choose_for_run(config, None, None, labels)
    return auto.choose_for_run(config, loaded, splits.pool_x, labels)


def check_drop_top(config, layers: int) -> None:
    config_lib.check(
        config.drop_top < layers,
        "drop_top",
        config.drop_top,
        f"the encoder has {layers} layers, so drop at most {layers - 1}",
    )


def build_model(loaded, config, num_classes: int, rng: jax.Array) -> Classifier:
    """Attach a new head to the exported encoder (a fresh one for scratch)."""
    encoder = loaded.module
    pretrained = config.preset != "scratch"
    if not pretrained:
        encoder = build_encoder(loaded.spec, rngs=nnx.Rngs(jax.random.fold_in(rng, 1)))
    check_drop_top(config, len(encoder.layers))
    drop_top_layers(encoder, config.drop_top)
    head = Head(
        encoder.features,
        config.head_hidden,
        num_classes,
        standardize=config.standardize_codes,
        rngs=nnx.Rngs(jax.random.fold_in(rng, 2)),
    )
    train_stats = not pretrained or (
        config.preset == "full" and config.release_batch_norm
    )
    return Classifier(encoder, head, encoder_batch_stats_train=train_stats)


def classifier_loss_fn(config):
    def loss_fn(model: Classifier, batch, rng):
        x = batch["x"]
        if config.augment and x.ndim == 4:
            x = augment(
                x,
                rng,
                shift=config.augment_shift,
                rotation=config.augment_rotation,
                noise=config.augment_noise,
            )
        # Dropout gets a key of its own, so the augmentation draws above do
        # not depend on whether the encoder has dropout.
        logits = model(x, train=True, rng=jax.random.fold_in(rng, 1))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
        weight = batch["weight"]
        return weighted_mean(losses, weight), {
            "accuracy": weighted_mean(correct, weight)
        }

    return loss_fn


def _codes(encoder: nnx.Module, x: jax.Array) -> jax.Array:
    return encoder(x)


def _logits(model: Classifier, x: jax.Array) -> jax.Array:
    return model(x, train=False)


def evaluate(model: Classifier, data: dict[str, np.ndarray]) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `model` on `data`."""
    logits = predict(model, _logits, data["x"])
    accuracy = float(np.mean(np.argmax(logits, -1) == data["y"]))
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, data["y"])
    return accuracy, float(np.mean(losses))


def stage_cache_key(rules, config) -> tuple:
    """Everything besides the model structure that the compiled step depends on:
    the freezing rules, the loss's augmentation settings and whether the
    optimizer has layer-wise rate groups."""
    augmentation = (
        config.augment,
        config.augment_shift,
        config.augment_rotation,
        config.augment_noise,
    )
    return ("finetune", tuple(rules), augmentation, config.layer_decay != 1.0)


def train_stage(
    model: Classifier,
    stage: Stage,
    splits: Splits,
    config,
    rng: jax.Array,
    writer,
    lr_multiplier: float,
) -> tuple[Classifier, dict]:
    """Train one stage with early stopping; return its best-validation model."""
    units = encoder_units(model.encoder)
    rules = stage_rules(stage, units)
    trained, train, val = model, splits.train, splits.val
    # A checkpoint of this stage under its own name contains the whole
    # classifier, so a run that has one resumes with the whole classifier.
    if (
        not stage.trainable_layers
        and codes_fixed_in_training(model, config.augment)
        and not phase_saved(stage.name)
    ):
        # The frozen encoder gives the same codes in every epoch, so they are
        # computed once and the stage trains the head on them.
        trained = HeadOnCodes(model.head)
        train = {**train, "x": predict(model.encoder, _codes, train["x"])}
        val = {**val, "x": predict(model.encoder, _codes, val["x"])}
        logger.info("%s: training the head on codes computed once", stage.name)

    params = nnx.state(trained, nnx.Param)
    labels = freezing.label_params(params, rules)
    freezing.log_rules(params, rules, stage.name)
    learning_rate = stage.learning_rate * lr_multiplier
    tx = freezing.masked_optimizer(labels, learning_rate, config.weight_decay)
    if config.layer_decay != 1.0:
        tx = layer_decay.decayed_optimizer(
            labels,
            learning_rate,
            config.weight_decay,
            units=units,
            num_layers=len(model.encoder.layers),
            decay=config.layer_decay,
        )
    trainer = PhaseTrainer(
        trained,
        classifier_loss_fn(config),
        tx,
        rng=rng,
        batch_size=min(config.batch_size, len(train["y"])),
        frozen=freezing.frozen_mask(labels),
        scan=config.scan,
        name=stage.name,
        cache_key=stage_cache_key(rules, config),
    )
    # Small validation sets often tie on accuracy; the lower loss breaks ties.
    best = BestTracker(
        lambda m: (m["val_accuracy"], -m["val_loss"]), patience=config.patience
    )

    def on_epoch(epoch, metrics):
        val_accuracy, val_loss = evaluate(trainer.model(), val)
        metrics["val_accuracy"], metrics["val_loss"] = val_accuracy, val_loss
        return False

    # Checkpoints of a head on codes contain no encoder, so they go apart from
    # those of the whole classifier.
    place = checkpoint_subdirectory(ON_CODES) if trained is not model else nullcontext()
    with place:
        history = fit(
            trainer,
            train,
            epochs=stage.epochs,
            writer=writer,
            on_epoch=on_epoch,
            select=best,
        )
    result = {
        "stage": stage.name,
        "trainable_layers": list(stage.trainable_layers),
        "learning_rate": learning_rate,
        "epochs_run": len(history),
        "best_epoch": best.best_epoch,
        "val_accuracy": best.best_score[0],
        "val_loss": -best.best_score[1],
        "train_loss": history[best.best_epoch - 1]["loss"],
        "compiles": trainer.trace_count,
    }
    best_model = best.best_model(trainer)
    if trained is not model:
        nnx.update(model.head, nnx.state(best_model.head))
        best_model = model
    return best_model, result


def run_schedule(loaded, splits, config, lr_multiplier, writer):
    """Run every stage of the preset; return the model of the best validation
    accuracy over all stages, that accuracy, and per-stage results."""
    rng = jax.random.key(config.seed)
    model = build_model(loaded, config, splits.num_classes, rng)
    if config.standardize_codes:
        codes = predict(model.encoder, _codes, splits.train["x"])
        model.head.fit_code_statistics(codes)
    stages = schedule(config.preset, len(model.encoder.layers), config)
    results = []
    best_score, best_state = (-1.0, 0.0), None
    for i, stage in enumerate(stages):
        stage_rng = jax.random.fold_in(rng, 100 + i)
        model, result = train_stage(
            model, stage, splits, config, stage_rng, writer, lr_multiplier
        )
        logger.info(
            "%s: best validation accuracy %.4f at epoch %d",
            stage.name,
            result["val_accuracy"],
            result["best_epoch"],
        )
        results.append(result)
        score = (result["val_accuracy"], -result["val_loss"])
        if score > best_score:
            best_score = score
            best_state = jax.tree.map(jnp.copy, nnx.state(model))
    nnx.update(model, best_state)
    return model, best_score, results


def run(
    config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> dict:
    """Fine-tune `config.encoder` on `config.dataset`; return the metrics.

    Writes `metrics.json`, `config.json`, `provenance.json`, `labels.json`
    (the exact label and validation indices), `metrics.jsonl`, checkpoints in
    `checkpoints/` and the fine-tuned model in `model/`. Run again on the same
    workdir and config, it resumes; a different config needs `overwrite`.
    """
    check_config(config)
    workdir = check_workdir(workdir)
    loaded = load_encoder(config.encoder)
    check_drop_top(config, len(loaded.module.layers))
    splits = prepare_splits(config, loaded)
    choice = choose_auto_preset(config, loaded, splits)
    splits.pool_x = None  # the choice was its only use

    resumed = start_run(workdir, config_lib.to_dict(config), overwrite=overwrite)
    if resumed:
        logger.info("resuming the run in %s", workdir)
    requested_preset = config.preset
    if choice is not None:
        config = auto.resolved_config(config, choice)
    run_provenance = provenance()
    write_provenance(workdir, {**run_provenance, "seed": config.seed}, resumed=resumed)
    write_json(os.path.join(workdir, "labels.json"), splits.label_split.to_dict())

    multipliers = tuple(config.lr_search) or (1.0,)
    writer = MetricWriter(workdir)
    best = None
    try:
        for multiplier in multipliers:
            loaded = load_encoder(config.encoder)  # each candidate starts afresh
            checkpoints = os.path.join(workdir, "checkpoints", f"lr_x{multiplier:g}")
            with checkpoint_root(checkpoints, every=config.checkpoint_every):
                model, score, stages = run_schedule(
                    loaded, splits, config, multiplier, writer
                )
            logger.info(
                "lr multiplier %g: validation accuracy %.4f", multiplier, score[0]
            )
            if best is None or score > best[0]:
                best = (score, multiplier, model, stages)
    finally:
        writer.close()

    score, multiplier, model, stages = best
    test_accuracy, test_loss = evaluate(model, splits.test)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "val_accuracy": score[0],
        "val_loss": -score[1],
        "labels": len(splits.train["y"]),
        "label_budget": config.labels,
        "seed": config.seed,
        "split_seed": config.split_seed,
        "preset": config.preset,
        "requested_preset": requested_preset,
        "auto": None if choice is None else choice.to_dict(),
        "dataset": config.dataset,
        "method": loaded.metadata["method"]
        if config.preset != "scratch"
        else "scratch",
        "encoder": os.path.abspath(config.encoder),
        "scaling": config.scaling,
        "lr_multiplier": multiplier,
        "lr_search": list(multipliers),
        "stages": stages,
    }
    model_metadata = {
        "format_version": MODEL_FORMAT_VERSION,
        "encoder": loaded.spec,
        "drop_top": config.drop_top,
        "head": head_spec(
            config.head_hidden, splits.num_classes, config.standardize_codes
        ),
        "scaling": (splits.scaler or loaded.scaler).to_dict(),
        "seed": config.seed,
    }
    write_weights_dir(
        os.path.join(workdir, "model"), flat_state(model), "model.json", model_metadata
    )
    write_json(os.path.join(workdir, "metrics.json"), metrics)
    logger.info(
        "test accuracy %.4f (%s, %s labels)",
        metrics["test_accuracy"],
        config.preset,
        config.labels,
    )
    return metrics
