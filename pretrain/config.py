"""Run configs in the ml_collections convention, checked before anything compiles.

A config is a locked `ml_collections.ConfigDict`. Command lines change it
with `--config FILE` (a Python file defining `get_config()`, or a saved
`config.json`) and `--config.KEY=VALUE` overrides. An unknown key is an error
that lists the valid keys.
"""

import ast
import difflib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config key or value that is invalid."""


def _unknown_key(key: str, valid: Iterable[str]) -> ConfigError:
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint} Valid keys: {valid}")


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def parse_value(text: str) -> Any:
    """Parse an override value: a Python literal, true/false, or a bare string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def set_value(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Set `config.key` (dotted for nested dicts), rejecting unknown keys and types."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
            raise _unknown_key(key, _all_keys(config))
        node = node[part]
    if leaf not in node:
        if node.is_locked:
            raise _unknown_key(key, _all_keys(config))
        node[leaf] = value  # an open section; the command that reads it checks it
        return

    current = node[leaf]
    if value is None and isinstance(current, str) and current:
        # A bare `none` parses as None, but a text field with a default takes
        # it as the choice "none" (pool=none, noise=none). Fields empty by
        # default are optional paths, where None stays an error.
        value = "none"
    if value is None and current is not None:
        # ConfigDict accepts None for any field; the checks that follow expect
        # the field's own type.
        raise ConfigError(
            f"config key {key!r} expects {_article(type(current).__name__)} "
            f"(default {current!r}), got None"
        )
    if isinstance(value, bool) and not isinstance(current, bool):
        # bool is a subclass of int, so ConfigDict would store True as 1.
        raise ConfigError(
            f"config key {key!r} expects {_article(type(current).__name__)} "
            f"(default {current!r}), got {value!r}"
        )
    if isinstance(current, tuple) and isinstance(value, int | float):
        value = (value,)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if (
        isinstance(current, float)
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        value = float(value)
    if isinstance(current, str) and isinstance(value, int | float):
        # A label budget of 100 parses as an int, but its field is text
        # (default "all"), so keep the number's text.
        value = str(value)
    try:
        node[leaf] = value
    except (TypeError, ValueError):  # ValueError: a dict value with dotted keys
        raise ConfigError(
            f"config key {key!r} expects {_article(type(current).__name__)} (default "
            f"{current!r}), got {value!r} of type {type(value).__name__}"
        ) from None


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _all_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]):
    for key, value in overrides.items():
        set_value(config, key, value)
    return config


def load_config_file(path: str) -> dict[str, Any]:
    """Read key/value pairs from a `.py` file with `get_config()` or a `.json` file."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                values = json.load(f)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"config file {path!r} is not valid JSON: {error}"
            ) from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path!r} must hold a JSON object")
        return _flatten(values)
    if path.endswith(".py"):
        return _flatten(_run_config_module(path))
    raise ConfigError(f"config file {path!r} must end in .py or .json")


def _run_config_module(path: str) -> dict[str, Any]:
    """Import a `.py` config file and return what its `get_config()` gives."""
    spec = importlib.util.spec_from_file_location("user_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise ConfigError(
            f"config file {path!r} has a syntax error at line {error.lineno}: "
            f"{error.msg}"
        ) from None
    except (
        Exception
    ) as error:  # The file is user code, so any exception may come from it.
        raise ConfigError(
            f"config file {path!r} failed to import: {type(error).__name__}: {error}"
        ) from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config()")
    try:
        return dict(module.get_config())
    except Exception as error:  # get_config() is user code too.
        raise ConfigError(
            f"get_config() in config file {path!r} raised "
            f"{type(error).__name__}: {error}; fix the file"
        ) from None


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def build_config(
    defaults: Callable[[], ml_collections.ConfigDict],
    *,
    file: str | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    open_sections: Iterable[str] = (),
) -> ml_collections.ConfigDict:
    """Defaults, then the config file, then overrides; the result is locked.

    `file` is a path for `load_config_file`, or the values already read from
    one. `open_sections` name nested dicts that accept new keys, such as an
    experiment's overrides for another command's config, which that command
    checks itself.
    """
    config = defaults()
    config.lock()
    for section in open_sections:
        config[section].unlock()
    if isinstance(file, str):
        file = load_config_file(file)
    if file is not None:
        apply_overrides(config, file)
    apply_overrides(config, overrides or {})
    return config


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Return a JSON-ready copy of the config (tuples become lists)."""
    return json.loads(config.to_json())


def check(condition: bool, key: str, value: Any, requirement: str) -> None:
    """Raise ConfigError for `key` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config key {key!r} = {value!r} is invalid: {requirement}")


def check_choice(
    config: ml_collections.ConfigDict, key: str, choices: tuple[str, ...]
) -> None:
    """Raise ConfigError unless `config[key]` is one of `choices`."""
    listed = ", ".join(choices[:-1]) + " or " + choices[-1]
    check(config[key] in choices, key, config[key], f"use {listed}")


def check_widths(config: ml_collections.ConfigDict, key: str = "hidden") -> None:
    """Raise ConfigError unless `config[key]` is one or more positive int widths."""
    widths = config[key]
    check(len(widths) > 0, key, widths, "give at least one width")
    check(
        all(isinstance(h, int) and h > 0 for h in widths),
        key,
        widths,
        "widths must be positive ints",
    )


def check_sparsity(config: ml_collections.ConfigDict) -> None:
    """Check the KL sparsity penalty's `sparsity_target` and `sparsity_weight`."""
    check(
        0.0 < config.sparsity_target < 1.0,
        "sparsity_target",
        config.sparsity_target,
        "must be in (0, 1)",
    )
    check(
        config.sparsity_weight >= 0,
        "sparsity_weight",
        config.sparsity_weight,
        "must be >= 0",
    )
