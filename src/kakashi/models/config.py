"""Training settings, torch-free: resolved against the ``train`` section of the config schema.

A model's settings are the shared ``train`` keys plus its own section (``train.rnn``,
``train.crnngan``, ...), each with the schema's default. Later sources override earlier:

    shared defaults < YAML ``train:`` < the model section's defaults < YAML
    ``train.<model>:`` < explicit overrides

A key the model does not have is an error naming the known ones, so a typo never goes
unnoticed. The resolved settings are stored in every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kakashi.errors import ModelError
from kakashi.models.registry import MODELS
from kakashi.settings import check_value, node, parse_value

# Keys of ``train:`` that configure the workflow, not ``kakashi train``.
WORKFLOW_KEYS = ("models", "threads", "runtime", "gpu")
# Settings of a run that are not training hyper-parameters (never in the config file).
RUN_KEYS = ("model", "shards", "out")


class TrainConfig(SimpleNamespace):
    """Every setting of one training run, as attributes (``config.epochs``); see
    :func:`resolve`. ``vars(config)`` is what the checkpoint stores."""

    def asdict(self) -> dict[str, Any]:
        return dict(vars(self))


def _train_schema() -> dict:
    return node("train")


def model_names() -> list[str]:
    """The registered models (:mod:`kakashi.models.registry`), each with its settings
    section ``train.NAME`` in the schema (tests/test_models.py checks that they agree)."""
    return list(MODELS)


def shared_keys() -> dict[str, dict]:
    """Settings every model has: schema entries at ``train`` level, workflow keys excluded."""
    props = _train_schema()["properties"]
    return {
        key: value
        for key, value in props.items()
        if key not in WORKFLOW_KEYS and value.get("type") != "object"
    }


def model_keys(model: str) -> dict[str, dict]:
    """The schema entries of one model's settings (shared ones included)."""
    props = _train_schema()["properties"]
    if model not in model_names():
        raise ModelError(f"unknown model {model!r}; known: {', '.join(model_names())}")
    keys = dict(shared_keys())
    for key, entry in props[model]["properties"].items():
        # A model section may re-declare a shared key (own default, or none: the shared one).
        keys[key] = {**keys.get(key, {}), **entry}
    return keys


def own_defaults(model: str) -> dict[str, Any]:
    """The defaults of a model's own schema section (``train.MODEL``)."""
    section = _train_schema()["properties"][model]["properties"]
    return {key: entry["default"] for key, entry in section.items() if "default" in entry}


def all_keys() -> dict[str, dict]:
    """Every setting of any model (for the command line's flags)."""
    out = dict(shared_keys())
    for model in model_names():
        for key, value in model_keys(model).items():
            out.setdefault(key, value)
    return out


def coerce(key: str, value: Any, entry: dict) -> Any:
    """A value of the type the schema declares (YAML may give 1e-3 as a string)."""
    try:
        return parse_value(entry, value)
    except ValueError as exc:
        raise ModelError(f"training setting {key}={value!r}: {exc}") from None


def _dotted(model: str, key: str) -> str:
    """Where the schema documents ``key`` of ``model``: ``train`` for a shared setting (a
    model section may re-declare it), else the model's own section."""
    return f"train.{key}" if key in shared_keys() else f"train.{model}.{key}"


def resolve(
    model: str, train_section: dict | None = None, overrides: dict | None = None
) -> TrainConfig:
    """The settings of ``model``: shared defaults < shared keys of ``train_section`` < the
    model section's defaults < its values (``train_section[model]``) < ``overrides``.
    ``overrides`` may also hold ``shards`` and ``out``."""
    known = model_keys(model)
    section = dict(train_section or {})
    for key in WORKFLOW_KEYS:
        section.pop(key, None)
    own = section.pop(model, None) or {}
    others = [name for name in model_names() if name != model]
    for name in others:
        section.pop(name, None)
    shared = shared_keys()
    # A model section's own defaults rank with its values: crnngan's default epochs (3)
    # beats a shared `train.epochs`, as in the workflow, whose config Snakemake fills from
    # the schema section by section.
    own = {**own_defaults(model), **own}
    values: dict[str, Any] = {key: entry["default"] for key, entry in shared.items()}
    for label, source, allowed in (("train", section, shared), (f"train.{model}", own, known)):
        for key, value in source.items():
            if key not in allowed:
                own_models = [m for m in model_names() if key in model_keys(m)]
                hint = f" (a setting of {', '.join(own_models)})" if own_models else ""
                raise ModelError(
                    f"unknown training setting {label}.{key}{hint}; shared settings: "
                    f"{', '.join(sorted(shared))}; settings of train.{model}: "
                    f"{', '.join(sorted(set(known) - set(shared)))}"
                )
            values[key] = value
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in RUN_KEYS:
            values[key] = value
            continue
        if key not in known:
            raise ModelError(
                f"--{key.replace('_', '-')} is not a setting of model {model}; its settings: "
                f"{', '.join(sorted(known))}"
            )
        values[key] = value
    for key, entry in known.items():
        if key not in values:
            raise ModelError(f"training setting {key} of {model} has no value")
        values[key] = coerce(key, values[key], entry)
        problem = check_value(entry, values[key], _dotted(model, key))
        if problem:
            raise ModelError(f"training setting {key}={values[key]!r}: {problem}")
    values["model"] = model
    values.setdefault("shards", "")
    values.setdefault("out", "")
    return TrainConfig(**values)


def init_path(init: str, out: str | Path) -> Path:
    """The checkpoint a model starts from: ``init`` as a path, or a model name, which means
    that model's checkpoint beside ``out`` (``init: rnn`` -> ``models/rnn.pt``). The one
    rule, for the trainer, the command line's input check and the workflow."""
    path = Path(init)
    if not path.is_file() and "/" not in init and not path.suffix:
        path = Path(out).parent / f"{init}.pt"
    return path


def config_from(yaml_path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Settings from a YAML file (a whole workflow config, whose ``train:`` section is used,
    or a bare ``train`` mapping) and explicit overrides; ``overrides['model']`` picks the
    model (default: the first of ``train.models``, else rnn)."""
    section: dict = {}
    if yaml_path:
        import yaml

        try:
            data = yaml.safe_load(Path(yaml_path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ModelError(f"cannot read training config {yaml_path}: {exc}") from exc
        section = data.get("train", data) if isinstance(data, dict) else None
        if not isinstance(section, dict):
            raise ModelError(f"{yaml_path}: expected a mapping (a 'train:' section)")
    model = overrides.get("model") or (section.get("models") or ["rnn"])[0]
    try:
        return resolve(model, section, {k: v for k, v in overrides.items() if k != "model"})
    except ModelError as exc:
        raise ModelError(f"{yaml_path}: {exc}" if yaml_path else str(exc)) from None
