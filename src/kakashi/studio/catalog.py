"""The checkpoints the studio serves, with the metrics of their last evaluation.

``--models`` names checkpoint files or folders (every ``*.pt`` in them, except the
trainer's ``*.last.pt`` resume files). A model's metrics are its row in the nearest
``metrics.json`` (``kakashi evaluate``'s output): beside the checkpoint, in ``eval/``
beside it, or in ``../eval/`` (the workflow's ``results/models`` -> ``results/eval``).
The preselected model is the one with the lowest FID_k (FID_g breaks ties) among the
evaluated models that dance: liveliness within ``LIVELY`` of the ground truth's and no
freeze longer than ``FREEZE_MAX_S``. FID alone can prefer a near-frozen dance (on the demo,
a seed RNN at half the real joint speed has the lowest FID_k of one test clip); if no model
passes, the lowest FID_k; without any evaluation, the first model found.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from kakashi.errors import CheckpointError, UnknownModelError

log = logging.getLogger("kakashi.studio")

# torch.save writes a zip archive: a cheap check that catches empty and foreign files
# without loading torch in the server process.
_ZIP_MAGIC = b"PK\x03\x04"
# The metrics shown beside a model, in the order of the evaluation table.
SHOWN_METRICS = (
    "fid_k",
    "fid_g",
    "div_k",
    "div_g",
    "bas",
    "pfc",
    "liveliness",
    "freeze_max_s",
    "jitter",
)
# What counts as dancing for the preselection (the targets of docs/evaluation.md's motion
# quality: liveliness 0.8-1.25 and no freeze over 2 s, with room for small test splits).
LIVELY = (0.6, 1.6)
FREEZE_MAX_S = 2.0


@dataclass
class Model:
    """One servable checkpoint: ``id`` is what the API and the page call it."""

    id: str
    path: Path
    metrics: dict = field(default_factory=dict)
    metrics_file: str | None = None
    problem: str | None = None  # why it cannot be used (missing, damaged), or None
    styles: list[str] = field(default_factory=list)  # the dance styles it knows (its checkpoint's)

    def public(self, best: str | None) -> dict:
        return {
            "id": self.id,
            "file": self.path.name,
            "metrics": self.metrics,
            "metrics_file": self.metrics_file,
            "best": self.id == best,
            "usable": self.problem is None,
            "problem": self.problem,
            "styles": self.styles,
        }


def _checkpoints(spec: Path) -> list[Path]:
    if spec.is_dir():
        return sorted(p for p in spec.glob("*.pt") if not p.name.endswith(".last.pt"))
    return [spec]


def _metrics_for(checkpoint: Path) -> tuple[dict, str | None]:
    folder = checkpoint.parent
    for candidate in (folder / "metrics.json", folder / "eval" / "metrics.json",
                      folder.parent / "eval" / "metrics.json"):  # fmt: skip
        if not candidate.is_file():
            continue
        try:
            rows = json.loads(candidate.read_text()).get("rows", [])
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: unreadable metrics (%s); models shown without them", candidate, exc)
            return {}, None
        for row in rows:
            if row.get("name") == checkpoint.stem and row.get("kind", "model") == "model":
                shown = {key: row[key] for key in SHOWN_METRICS if row.get(key) is not None}
                return shown, str(candidate)
        return {}, None  # the nearest evaluation did not score this model
    return {}, None


def _styles_of(path: Path) -> list[str]:
    """The styles a checkpoint knows ([] without style labels, or when it cannot be read:
    a request then gets the loader's own error)."""
    from kakashi.errors import KakashiError
    from kakashi.models.checkpoint import load_checkpoint
    from kakashi.models.styles import known_styles

    try:
        return known_styles(load_checkpoint(path))
    except KakashiError:
        return []


def _problem(path: Path) -> str | None:
    if not path.is_file():
        return f"checkpoint {path} does not exist; train one with `kakashi train`"
    with open(path, "rb") as handle:
        if handle.read(4) != _ZIP_MAGIC:
            return f"{path} is damaged or not a Kakashi checkpoint; retrain with `kakashi train`"
    return None


@dataclass
class Catalog:
    models: dict[str, Model]
    best: str | None

    def public(self) -> dict:
        return {"best": self.best, "models": [m.public(self.best) for m in self.models.values()]}

    def get(self, model_id: str | None) -> Model:
        """The model named ``model_id`` (the preselected one when empty), usable."""
        model_id = model_id or self.best
        if model_id not in self.models:
            known = ", ".join(self.models) or "none"
            raise UnknownModelError(f"unknown model {model_id!r}; the studio serves: {known}")
        model = self.models[model_id]
        # Checked again at each request: a checkpoint can be deleted or retrained meanwhile.
        problem = _problem(model.path)
        if problem:
            raise CheckpointError(problem)
        return model


def find_models(specs: list[str | Path]) -> Catalog:
    """Every checkpoint under ``specs`` with its metrics, and the preselected one."""
    models: dict[str, Model] = {}
    for spec in specs:
        for path in _checkpoints(Path(spec)):
            model_id = path.stem
            if model_id in models:  # two folders with a model of the same name
                model_id = f"{path.parent.name}/{path.stem}"
            metrics, source = _metrics_for(path)
            problem = _problem(path)
            styles = _styles_of(path) if problem is None else []
            models[model_id] = Model(model_id, path.resolve(), metrics, source, problem, styles)
    scored = [m for m in models.values() if m.problem is None and "fid_k" in m.metrics]
    dancing = [m for m in scored if _dances(m.metrics)]
    if scored:
        best = min(
            dancing or scored, key=lambda m: (m.metrics["fid_k"], m.metrics.get("fid_g", 0.0))
        ).id
    else:
        best = next((m.id for m in models.values() if m.problem is None), None)
    return Catalog(models, best)


def _dances(metrics: dict) -> bool:
    """Lively enough and never frozen for long, where the evaluation measured it."""
    liveliness = metrics.get("liveliness")
    freeze = metrics.get("freeze_max_s")
    lively = liveliness is None or LIVELY[0] <= liveliness <= LIVELY[1]
    return lively and (freeze is None or freeze <= FREEZE_MAX_S)
