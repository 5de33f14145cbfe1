"""Checkpoints of every model: one format, saved atomically, loaded safely, built by name.

A checkpoint is a dict of plain tensors, numbers, strings and lists, so
``torch.load(path, weights_only=True)`` reads it (no pickled classes):

- ``format``, ``kakashi_version``; ``config``: every training setting (``TrainConfig``);
- ``arch``: what ``build`` needs, with ``kind`` = the model's registry name;
- ``stats``: normalisation statistics, bone lengths and the audio-feature settings (fps,
  hop_length, feature names) of the training shards (``kakashi.models.stats.Stats``);
- ``model``: the network's state dict; plus the trainer's own resume state;
- with style labels in the train shards: ``styles``, ``music_style`` and
  ``sequence_styles`` (:mod:`kakashi.models.styles`).

Files written for ``--out results/models/rnn.pt``: ``rnn.pt`` (the best epoch by validation
loss, or the last without a val split), ``rnn.last.pt`` (resume state, every epoch),
``rnn.csv`` and ``rnn.png`` (losses per epoch).
"""

from __future__ import annotations

import csv
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kakashi import __version__
from kakashi.atomic import atomic_output
from kakashi.errors import CheckpointError, ModelError, tool_reason
from kakashi.inputs import require
from kakashi.models import registry
from kakashi.models.stats import Stats

CHECKPOINT_FORMAT = "kakashi-dance-model"


def paths_for(out: str | Path) -> dict[str, Path]:
    """The files a run writes beside ``out`` (rnn.pt -> rnn.last.pt, rnn.csv, rnn.png)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".pt" else out
    return {
        "best": out,
        "last": Path(f"{stem}.last.pt"),
        "csv": Path(f"{stem}.csv"),
        "png": Path(f"{stem}.png"),
    }


def new_payload(config, arch: dict, stats: Stats, model: dict, history: list, **extra) -> dict:
    """The checkpoint dict every model writes (see the module doc); ``extra``: resume state."""
    from kakashi.models.styles import training_styles

    return {
        "format": CHECKPOINT_FORMAT,
        "kakashi_version": __version__,
        "config": config.asdict(),
        "arch": arch,
        "stats": stats.to_dict(),
        "model": model,
        "history": history,
        **training_styles(config.shards),
        **extra,
    }


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save to a hidden temporary file, then rename: never a half-written checkpoint."""
    with atomic_output(path) as partial:
        torch.save(payload, partial)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely (``weights_only``); errors name the file and what to do."""
    path = require(path, "checkpoint", CheckpointError, "train one with `kakashi train`")
    _check_declared_size(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, unpickling and truncation errors
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {tool_reason(str(exc))}); "
            "the file is damaged or not a Kakashi checkpoint, retrain with `kakashi train`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a Kakashi dance-model checkpoint; train one with `kakashi train`"
        )
    return payload


def _check_declared_size(path: Path) -> None:
    """Refuse a zip whose members declare far more than the file holds, before inflating.

    ``torch.save`` stores its members uncompressed, so a checkpoint's contents are as large
    as the file; a 1-MB zip bomb declaring 2.3 GB was inflated in full before it was refused.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # torch.load says what it is
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({tool_reason(str(exc))}); the file is damaged, "
            "retrain with `kakashi train`"
        ) from exc
    size = path.stat().st_size
    if declared > 2 * size + (1 << 20):
        raise CheckpointError(
            f"checkpoint {path} declares {declared / 1e6:.0f} MB of contents in a "
            f"{size / 1e6:.1f}-MB file (torch stores checkpoints uncompressed): it is no "
            "Kakashi checkpoint, retrain with `kakashi train`"
        )


@dataclass
class LoadedModel:
    """A checkpoint ready to generate: its network (eval mode), statistics and raw dict."""

    name: str
    net: torch.nn.Module
    stats: Stats
    payload: dict

    def takes_option(self, name: str) -> bool:
        """Whether this model's ``generate_motion`` takes the keyword ``name``."""
        network = registry.network(self.name)
        return name in inspect.signature(network.generate_motion).parameters

    def set_sampling(self, items: list[str] | None, checkpoint: str | Path = "") -> dict:
        """Change generation settings for the dances this model makes next: ``KEY=VALUE``
        texts (``kakashi generate --sampling``), each one of the model's
        ``GENERATION_KEYS`` (the arch settings its generation reads, never the network's
        shape), parsed and checked by its schema entry ``train.MODEL.KEY``. Returns the
        settings changed ({} for none): what the dance's metadata records."""
        from kakashi.models.config import model_keys
        from kakashi.settings import check_value, parse_value

        allowed = getattr(registry.network(self.name), "GENERATION_KEYS", ())
        changed = {}
        for item in items or []:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in allowed:
                known = ", ".join(allowed) or "none"
                raise ModelError(
                    f"--sampling {item!r}: give KEY=VALUE with a generation setting of model "
                    f"{self.name} ({known})"
                )
            entry = model_keys(self.name)[key]
            try:
                value = parse_value(entry, text.strip())
            except ValueError as exc:
                raise ModelError(f"--sampling {item!r}: {exc}") from None
            problem = check_value(entry, value, f"train.{self.name}.{key}")
            if problem:
                raise ModelError(f"--sampling {item!r}: {problem}")
            changed[key] = value
        style_drop = self.payload.get("config", {}).get("style_drop")
        if changed.get("guidance", 1) != 1 and style_drop == 0:
            raise ModelError(
                f"--sampling guidance needs a model trained with style_drop above 0; "
                f"{checkpoint or self.name} was trained without it: use guidance=1"
            )
        if changed:  # (the recurrent networks keep no arch: they have no such settings)
            self.net.arch.update(changed)
        return changed

    def generate_motion(self, audio, first_pose, seed: int, **options):
        """(pose (T, 17, 3), root (T, 3)) for raw audio features (T, F); ``options`` are
        keyword arguments only some models take (motiongraph's ``only``)."""
        network = registry.network(self.name)
        accepted = inspect.signature(network.generate_motion).parameters
        unknown = [key for key in options if key not in accepted]
        if unknown:
            raise ModelError(
                f"model {self.name} has no generation option {', '.join(unknown)}; "
                "drop it (--only applies to motiongraph)"
            )
        return network.generate_motion(self.net, self.stats, audio, first_pose, seed, **options)


def load_model(path: str | Path) -> LoadedModel:
    """Build the network of any registered model from its checkpoint (no training code)."""
    payload = load_checkpoint(path)
    try:
        name = payload["arch"]["kind"]
        net = registry.network(name).build(payload["arch"])
        net.load_state_dict(payload["model"])
        stats = Stats.from_dict(payload["stats"])
    except (KeyError, RuntimeError, TypeError, ModelError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is incomplete or mismatched ({exc}); retrain with `kakashi train`"
        ) from exc
    return LoadedModel(name, net.eval(), stats, payload)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("train.device is cuda but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def write_history(history: list[dict], csv_path: Path, png_path: Path) -> None:
    """The per-epoch CSV and a loss plot (matplotlib Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_output(csv_path) as partial, open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)

    # Rows are epochs (recurrent models) or logging points of training stages (motif).
    x = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = [key for key in columns if key.endswith(("loss", "mse")) or key == "vel_ratio"]
    for key in curves:
        values = [row.get(key, np.nan) for row in history]
        if any(np.isfinite(v) and v > 0 for v in values):
            ax.plot(x, values, marker=".", label=key)
    ax.set_xlabel("epoch" if all("epoch" in row for row in history) else "log point")
    ax.set_yscale("log")
    if ax.get_lines():  # a model without loss curves (motiongraph) gets an empty frame
        ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(csv_path.stem)
    fig.tight_layout()
    try:
        with atomic_output(png_path) as partial_png:
            fig.savefig(partial_png, dpi=100)
    finally:
        plt.close(fig)
