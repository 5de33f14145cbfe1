"""One home for every setting's default: ``schemas/config.schema.yaml``.

The workflow fills its config from the schema (``snakemake.utils.validate``), the command
line takes its flag defaults from it (:func:`default`), and training settings are resolved
against its ``train`` section (:mod:`kakashi.models.config`). So a default is written once,
with its description, and a command run by hand behaves as the workflow does.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONFIG_SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"


@functools.cache
def load_schema(path: Path) -> dict:
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def config_schema() -> dict:
    """The workflow config schema (parsed once per process)."""
    return load_schema(CONFIG_SCHEMA)


def node(dotted: str) -> dict:
    """The schema of a config key, e.g. ``node("features.hop_length")``."""
    current = config_schema()
    for key in dotted.split("."):
        current = current["properties"][key]
    return current


def default(dotted: str) -> Any:
    """The default of a config key, e.g. ``default("fps")`` -> 30."""
    return copy.deepcopy(node(dotted)["default"])


def check_setting(dotted: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the config key (its documented range, pattern or
    choices in the schema), or None when it is allowed."""
    return check_value(node(dotted), value, dotted)


def check_value(entry: dict, value: Any, dotted: str) -> str | None:
    """What is wrong with ``value`` for the schema entry ``entry`` of config key ``dotted``
    (jsonschema: the one validator of the workflow, the flags and training), or None."""
    import jsonschema

    rules = {name: rule for name, rule in entry.items() if name != "default"}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(rules).iter_errors(value)
    )
    if error is None:
        return None
    return f"{error.message} (see {dotted} in schemas/config.schema.yaml)"


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off, any case) -> bool; ValueError else."""
    lowered = text.lower()
    if lowered not in _TRUE + _FALSE:
        raise ValueError(f"expected true or false, got {text!r}")
    return lowered in _TRUE


# Python types of the schema's scalar types.
SCALAR_TYPES = {"integer": int, "number": float, "string": str, "boolean": bool}


def parse_value(entry: dict, value: Any) -> Any:
    """``value`` (a flag's text, or a YAML value: 1e-3 may come as a string) as the type
    the schema entry declares; ValueError names what was expected. The one parser of
    command-line flags and training settings."""
    kind = SCALAR_TYPES[entry["type"]]
    if kind is bool:
        if isinstance(value, bool):
            return value
        return parse_bool(value) if isinstance(value, str) else bool(value)
    try:
        converted = kind(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if kind is int and isinstance(value, float) and value != converted:
        raise ValueError("expected a whole number")
    return converted


def flag_type(entry: dict):
    """argparse's ``type`` for a flag of schema entry ``entry`` (:func:`parse_value`);
    argparse names it in "invalid int value: 'x'"."""

    def parse(text: str) -> Any:
        return parse_value(entry, text)

    parse.__name__ = SCALAR_TYPES[entry["type"]].__name__
    return parse


def defaults(dotted: str) -> dict:
    """The defaults of every key of a config section, e.g. ``defaults("pose.smoothing")``
    (a section's own default is ``{}``: the workflow fills its keys in on validation)."""
    return {key: default(f"{dotted}.{key}") for key in node(dotted)["properties"]}


def help_text(dotted: str) -> str:
    """The schema's description of a key, with its default, for argparse's ``--help``."""
    entry = node(dotted)
    text = argparse_text(entry.get("description", dotted))
    return f"{text} (default: {entry['default']})" if "default" in entry else text


def argparse_text(text: str) -> str:
    """``text`` as an argparse help string, which %-formats it: a literal % doubles."""
    return text.replace("%", "%%")


def validator_with_defaults(schema: dict) -> Any:
    """A Draft 2020-12 validator for ``schema`` that also fills in defaults while it checks."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(
        validator: Any, properties: dict, instance: Any, schema: dict
    ) -> Iterator[Any]:
        for name, subschema in properties.items():
            if isinstance(instance, dict) and "default" in subschema:
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})(schema)
