"""BERT masked-token pretraining on byte-tokenised text (Devlin et al. 2019).

Each step selects round(0.15 x eligible) positions per sequence (at least one)
among tokens that are neither special nor padding, and corrupts them: 80%
become the mask token, 10% a random byte token, 10% stay unchanged. The
Transformer predicts the original tokens at the selected positions through an
output layer tied to the token embedding. The loss is the cross-entropy summed
over every selected position of the batch, divided by their count.

Text datasets are not images, so `pretrain.run.run` cannot load them; train
with `run_text(config, workdir)`, which writes the same outputs.
"""

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from pretrain import config as config_lib
from pretrain.checkpoint import checkpoint_root
from pretrain.data import DatasetError, Scaler
from pretrain.data.text import ByteTokenizer, load_texts
from pretrain.export import save_encoder, save_safetensors
from pretrain.masked_config import check_bert_values
from pretrain.masking import corrupt_tokens, select_tokens
from pretrain.methods import PretrainContext, TrainedEncoder
from pretrain.metrics import MetricWriter
from pretrain.multihost import is_primary, primary_first
from pretrain.optimizer import optimizer_from_config
from pretrain.provenance import provenance
from pretrain.rng import draw_rng_impl
from pretrain.run import check_common
from pretrain.train import PhaseTrainer, fit
from pretrain.transformer import TransformerEncoder, transformer_spec
from pretrain.workdir import check_workdir, start_run, write_provenance

logger = logging.getLogger(__name__)


class MaskedLanguageModel(nnx.Module):
    """A token transformer encoder with BERT's prediction head: dense, GELU,
    layer norm, then logits from the transposed token embedding plus a bias."""

    def __init__(self, encoder: TransformerEncoder, vocab_size: int, *, rngs):
        self.encoder = encoder
        self.transform = nnx.Linear(encoder.width, encoder.width, rngs=rngs)
        self.transform_norm = nnx.LayerNorm(encoder.width, rngs=rngs)
        self.output_bias = nnx.Param(jnp.zeros((vocab_size,)))

    def logits(self, tokens: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        """Logits [batch, length, vocab] for token ids [batch, length]."""
        encoder = self.encoder
        attend = (tokens != encoder.pad_id)[:, None, None, :]
        h = encoder.encode(encoder.embed_inputs(tokens), mask=attend, rng=rng)
        h = self.transform_norm(jax.nn.gelu(self.transform(h)))
        return encoder.embed.attend(h) + self.output_bias[...]


def masked_token_loss(
    logits: jax.Array, targets: jax.Array, selected: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy and accuracy over the selected positions of real rows.

    The loss sums over every selected position of the batch and divides by
    their count, so sequences with more selected tokens weigh more. Rows of
    weight 0 (padding of the last batch) take no part.
    """
    counted = selected & (weight[:, None] > 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets).astype(losses.dtype)
    count = jnp.maximum(jnp.sum(counted), 1)
    loss = jnp.sum(jnp.where(counted, losses, 0.0)) / count
    accuracy = jnp.sum(jnp.where(counted, correct, 0.0)) / count
    return loss, accuracy


def bert_loss_fn(config: ml_collections.ConfigDict, tokenizer: ByteTokenizer):
    special = jnp.asarray(tokenizer.special_ids, jnp.int32)

    def loss_fn(model: MaskedLanguageModel, batch, rng):
        select_rng, corrupt_rng, dropout_rng = jax.random.split(rng, 3)
        tokens = batch["x"].astype(jnp.int32)
        eligible = ~jnp.isin(tokens, special)
        selected = select_tokens(select_rng, eligible, config.select_ratio)
        inputs = corrupt_tokens(
            corrupt_rng,
            tokens,
            selected,
            mask_id=tokenizer.mask_id,
            random_low=tokenizer.byte_offset,
            random_high=tokenizer.vocab_size,
        )
        logits = model.logits(inputs, rng=dropout_rng)
        loss, accuracy = masked_token_loss(logits, tokens, selected, batch["weight"])
        return loss, {"masked_accuracy": accuracy}

    return loss_fn


def bert_spec(config: ml_collections.ConfigDict, tokenizer: ByteTokenizer) -> dict:
    return transformer_spec(
        "tokens",
        (config.sequence_length,),
        patch_size=1,
        width=config.width,
        depth=config.depth,
        heads=config.heads,
        mlp_ratio=config.mlp_ratio,
        dropout=config.dropout,
        pooling=config.pooling,
        tokenizer=tokenizer.to_spec(),
        dtype=config.dtype,
    )


def pretrain_bert(context: PretrainContext) -> TrainedEncoder:
    """Train on `context.x`, int token ids [n, sequence_length] of a
    `ByteTokenizer`."""
    config = context.config
    tokenizer = ByteTokenizer()
    spec = bert_spec(config, tokenizer)
    rngs = nnx.Rngs(context.rng_for("init"))
    model = MaskedLanguageModel(
        TransformerEncoder(spec, rngs=rngs), tokenizer.vocab_size, rngs=rngs
    )
    trainer = PhaseTrainer(
        model,
        bert_loss_fn(config, tokenizer),
        optimizer_from_config(config, len(context.x)),
        rng=context.train_rng("train"),
        batch_size=config.batch_size,
        scan=config.scan,
        drop_remainder=config.drop_remainder,
        name="bert",
    )
    fit(trainer, {"x": context.x}, epochs=config.epochs, writer=context.writer)
    return TrainedEncoder(trainer.model().encoder, spec, None, {})


def token_scaler(sequence_length: int) -> Scaler:
    """Return the identity scaling, (x - 0) / 1, that token-id exports carry."""
    return Scaler(
        kind="minmax",
        params={"min": 0.0, "max": 1.0},
        feature_shape=(sequence_length,),
    )


def run_text(
    config: ml_collections.ConfigDict, workdir: str, *, overwrite: bool = False
) -> str:
    """Pretrain `bert` on the TFDS text dataset `config.dataset`; return the
    export directory.

    Writes what `pretrain.run.run` writes (config.json, provenance.json,
    metrics.jsonl, tb/, checkpoints/, encoder/) except pictures, and resumes
    or overwrites as it does. The export's scaling is the identity, so its
    inputs are the token ids of `ByteTokenizer`.
    """
    check_common(config)
    check_bert_values(config)
    config.rng_impl = draw_rng_impl(config.rng_impl)
    workdir = check_workdir(workdir)
    tokenizer = ByteTokenizer()
    # Process 0 first, so that several processes never prepare a dataset at once.
    texts = primary_first(
        lambda: load_texts(
            config.dataset,
            data_dir=config.data_dir or None,
            split=config.text_split,
            key=config.text_key,
            max_examples=config.max_examples,
        ),
        errors=(DatasetError,),
    )
    tokens = tokenizer.encode(texts, config.sequence_length)
    logger.info("bert: %d sequences of %d byte tokens", *tokens.shape)

    saved_config = {"method": "bert", **config_lib.to_dict(config)}
    resumed = start_run(workdir, saved_config, overwrite=overwrite)
    if resumed:
        logger.info("resuming the run in %s", workdir)
    run_provenance = provenance()
    write_provenance(
        workdir,
        {**run_provenance, "seed": config.seed, "method": "bert"},
        resumed=resumed,
    )

    writer = MetricWriter(workdir)
    try:
        context = PretrainContext(
            config=config,
            x=tokens,
            unit_range=False,
            rng=jax.random.key(config.seed),
            writer=writer,
            workdir=workdir,
        )
        checkpoints = os.path.join(workdir, "checkpoints")
        with checkpoint_root(checkpoints, every=config.checkpoint_every):
            trained = pretrain_bert(context)
    finally:
        writer.close()

    export_dir = os.path.join(workdir, "encoder")
    save_encoder(
        export_dir,
        trained.module,
        spec=trained.spec,
        scaler=token_scaler(config.sequence_length),
        method="bert",
        config=saved_config,
        seed=config.seed,
        provenance=run_provenance,
    )
    if config.safetensors:
        save_safetensors(
            trained.module, os.path.join(export_dir, "weights.safetensors")
        )
    if is_primary():
        logger.info("wrote the encoder export to %s", export_dir)
    return export_dir
