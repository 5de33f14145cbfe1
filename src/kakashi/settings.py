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
    import jsonschema

    entry = {name: rule for name, rule in node(dotted).items() if name != "default"}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(entry).iter_errors(value)
    )
    if error is None:
        return None
    return f"{error.message} (see {dotted} in schemas/config.schema.yaml)"


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
