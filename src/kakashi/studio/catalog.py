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
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from kakashi.errors import CheckpointError, UnknownModelError

log = logging.getLogger("kakashi.studio")

# torch.save writes a zip archive: a cheap check that catches empty and foreign files
# without loading torch in the server process.
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save stores its members uncompressed: a checkpoint that unpacks to much more than
# its own size is a zip bomb.
_UNPACKED_RATIO = 4
_UNPACKED_SLACK = 1 << 20
# What a weights-only checkpoint's pickle may name (torch's tensor rebuilders and storage
# types, OrderedDict); anything else (os.system, builtins.eval, ...) is code.
_SAFE_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
# The metrics shown beside a model, in the order of the evaluation table.
SHOWN_METRICS = (
    "fid_k_heldout",
    "fid_g_heldout",
    "style_accuracy",
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
            "quality": quality_words(self.metrics),
            "metrics_file": Path(self.metrics_file).name if self.metrics_file else None,
            "best": self.id == best,
            "usable": self.problem is None,
            "problem": self.problem,
            "styles": self.styles,
        }


# Plain words for the metrics (docs/evaluation.md): (metric, [(upper bound, words), ...]),
# the first band the value falls below. The FID bands are what the demo and m2d models
# span (a random-retrieval baseline of real dancing scores FID_k ~30 on m2d).
_WORDS = (
    ("liveliness", [(0.6, "sluggish"), (0.8, "a little calm"), (1.25, "lively"),
                    (1.6, "a little restless"), (float("inf"), "jittery")]),
    ("fid_g", [(30, "in style"), (80, "partly in style"), (float("inf"), "off style")]),
    ("fid_k", [(40, "close to real dancing"), (90, "somewhat like real dancing"),
               (float("inf"), "far from real dancing")]),
)  # fmt: skip


def quality_words(metrics: dict) -> str:
    """The evaluation in plain words, e.g. "lively, in style, close to real dancing"."""
    words = []
    for name, bands in _WORDS:
        if name in metrics:
            words.append(next(text for bound, text in bands if metrics[name] < bound))
    if metrics.get("freeze_max_s", 0) > FREEZE_MAX_S:
        words.append("freezes at times")
    if metrics.get("bas", 0) >= 0.25:
        words.append("on the beat")
    return ", ".join(words) if words else "not evaluated yet"


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


def _globals_in(pickle: bytes) -> set[str]:
    """The ``module.name`` globals a pickle would import, read without running it."""
    names, strings = set(), []
    for opcode, argument, _ in pickletools.genops(pickle):
        if opcode.name in ("GLOBAL", "INST"):
            names.add(str(argument).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
        elif isinstance(argument, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
            strings.append(str(argument))
    return names


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
    """Why the checkpoint cannot be served, or None: read as data, never loaded here."""
    name = path.name  # messages name the file, not the server's folders
    damaged = f"{name} is damaged or not a Kakashi checkpoint; retrain with `kakashi train`"
    if not path.is_file():
        return f"checkpoint {name} does not exist; train one with `kakashi train`"
    with open(path, "rb") as handle:
        if handle.read(4) != _ZIP_MAGIC:
            return damaged
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            unpacked = sum(member.file_size for member in members)
            if unpacked > _UNPACKED_RATIO * path.stat().st_size + _UNPACKED_SLACK:
                return f"{name} unpacks to {unpacked / 1e6:.0f} MB (a zip bomb?); not used"
            pickles = [m for m in members if m.filename.endswith("data.pkl")]
            if len(pickles) != 1:
                return damaged
            unsafe = sorted(
                g for g in _globals_in(archive.read(pickles[0])) if not g.startswith(_SAFE_GLOBALS)
            )
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError):
        return damaged
    if unsafe:
        return (
            f"{name} holds code or foreign objects ({', '.join(unsafe[:3])}), not only "
            "weights: never load it; retrain with `kakashi train`"
        )
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
        best = min(dancing or scored, key=_closeness).id
    else:
        best = next((m.id for m in models.values() if m.problem is None), None)
    return Catalog(models, best)


def _closeness(model: Model) -> tuple[float, float]:
    """How far from real dancing (lower is closer): the FID against the real held-out test
    dances where the evaluation measured it, else against the train split. The train-split
    FID ranks a replay of the training set first (m2d: random train clips 9.5, real unseen
    dancing 52.6), the held-out one does not."""
    metrics = model.metrics
    if "fid_k_heldout" in metrics:
        return metrics["fid_k_heldout"], metrics.get("fid_g_heldout", 0.0)
    return metrics["fid_k"], metrics.get("fid_g", 0.0)


def _dances(metrics: dict) -> bool:
    """Lively enough and never frozen for long, where the evaluation measured it."""
    liveliness = metrics.get("liveliness")
    freeze = metrics.get("freeze_max_s")
    lively = liveliness is None or LIVELY[0] <= liveliness <= LIVELY[1]
    return lively and (freeze is None or freeze <= FREEZE_MAX_S)
