"""Property-based checks: odd overrides and odd export metadata give only the
documented errors, never a crash of another kind."""

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.run import check_config as check_finetune
from finetune.run import default_config as finetune_defaults
from pretrain import config as config_lib
from pretrain.cli_common import USER_ERRORS
from pretrain.config import ConfigError
from pretrain.export import ExportError, load_encoder
from pretrain.run import check_common, default_config

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
override_text = st.text(max_size=12) | json_values.map(repr)


def pretrain_keys():
    return sorted(default_config("ae").keys())


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(pretrain_keys()) | st.text(max_size=10), text=override_text)
def test_pretrain_override_only_config_errors(key, text):
    try:
        config = config_lib.build_config(
            lambda: default_config("ae"),
            overrides={key: config_lib.parse_value(text)},
        )
        check_common(config)
    except ConfigError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    key=st.sampled_from(sorted(finetune_defaults().keys())) | st.text(max_size=10),
    text=override_text,
)
def test_finetune_override_only_config_errors(key, text):
    overrides = {"encoder": "some/dir", key: config_lib.parse_value(text)}
    try:
        config = config_lib.build_config(finetune_defaults, overrides=overrides)
        check_finetune(config)
    except USER_ERRORS:  # a label budget is checked by the data package
        pass


METADATA_PATHS = [
    ("format_version",),
    ("encoder",),
    ("encoder", "family"),
    ("encoder", "input_shape"),
    ("encoder", "layers"),
    ("scaling",),
    ("scaling", "kind"),
    ("scaling", "params"),
    ("method",),
]


@pytest.fixture(scope="module")
def pristine(ae_export):
    with open(os.path.join(ae_export, "encoder.json")) as f:
        return json.load(f)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(METADATA_PATHS),
    value=json_values,
    delete=st.booleans(),
)
def test_mutated_metadata_only_export_errors(
    ae_export, pristine, tmp_path_factory, path, value, delete
):
    directory = str(tmp_path_factory.mktemp("mutated") / "encoder")
    shutil.copytree(ae_export, directory)
    metadata = json.loads(json.dumps(pristine))
    node = metadata
    for key in path[:-1]:
        node = node[key]
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    with open(os.path.join(directory, "encoder.json"), "w") as f:
        json.dump(metadata, f)

    try:
        load_encoder(directory)
    except ExportError:
        pass
