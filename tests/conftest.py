"""Shared fixtures: one prepared TFDS data directory and small exports per session."""

import os

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data directory for the whole session, also set as $TFDS_DATA_DIR
    so that command-line runs in the tests find the prepared datasets."""
    path = str(tmp_path_factory.mktemp("tfds"))
    previous = os.environ.get("TFDS_DATA_DIR")
    os.environ["TFDS_DATA_DIR"] = path
    yield path
    if previous is None:
        os.environ.pop("TFDS_DATA_DIR", None)
    else:
        os.environ["TFDS_DATA_DIR"] = previous


@pytest.fixture(scope="session")
def ae_export(data_dir, tmp_path_factory):
    """A small two-layer stacked autoencoder pretrained on digits."""
    from pretrain import config as config_lib
    from pretrain.run import default_config, run

    config = config_lib.build_config(
        lambda: default_config("ae"),
        overrides={"hidden": (32, 16), "epochs": 3, "data_dir": data_dir},
    )
    workdir = str(tmp_path_factory.mktemp("ae"))
    return run("ae", config, workdir)


@pytest.fixture(scope="session")
def bn_export(data_dir, tmp_path_factory):
    """A small stacked autoencoder with batch norm, pretrained on digits."""
    from pretrain import config as config_lib
    from pretrain.run import default_config, run

    config = config_lib.build_config(
        lambda: default_config("ae"),
        overrides={
            "hidden": (24, 12),
            "epochs": 2,
            "batch_norm": True,
            "data_dir": data_dir,
        },
    )
    workdir = str(tmp_path_factory.mktemp("ae_bn"))
    return run("ae", config, workdir)
