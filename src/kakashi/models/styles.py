"""Dance styles: what training learns of them and what generation asks for (issue #24).

Training: when the train shards carry at least two style labels (the sources sheet's
``style`` column, shard metadata ``style``), the checkpoint of every model also holds

- ``styles``: the styles it knows (sorted), the choices of ``kakashi generate --style``;
- ``music_style``: :class:`kakashi.music_style.MusicStyle` fitted on the labelled train
  songs' audio features (``to_dict``: plain lists, so the file stays ``weights_only``);
- ``sequence_styles``: each labelled train recording's style.

:func:`training_styles` computes them once per set of train shards (the recurrent loop
writes a checkpoint every epoch), and :func:`kakashi.models.checkpoint.new_payload` adds
them, so every model gets them from the one place. Without labels (the demo) the
checkpoint has none of these keys and generation behaves as before.

Generation: :func:`choose_style` is the one helper ``kakashi generate`` (a song or
``--shards``) and the studio use: ``auto`` (the default when the checkpoint knows
styles) infers the song's style from its audio features, a name is checked against the
checkpoint's styles.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kakashi.errors import ModelError

log = logging.getLogger("kakashi.models.styles")

AUTO = "auto"
_CACHE: dict[tuple, dict] = {}


def training_styles(shards: str | Path) -> dict:
    """The checkpoint keys of the module doc for the train split of ``shards`` ({} when it
    has fewer than two styles). Fitted once per content of the train shards."""
    from kakashi.shards import list_shards

    if not shards or not Path(shards).is_dir():
        return {}
    key = tuple((str(p), p.stat().st_mtime_ns) for p in list_shards(shards, "train"))
    if not key:
        return {}
    if key not in _CACHE:
        _CACHE[key] = _fit(shards)
    return copy.deepcopy(_CACHE[key])


def _fit(shards: str | Path) -> dict:
    from kakashi import music_style
    from kakashi.models.data import read_split

    labelled = [seq for seq in read_split(shards, "train") if seq.style]
    found = sorted({seq.style for seq in labelled})
    if len(found) < 2:
        if found:
            log.info("the train shards have one style (%s): no style model", found[0])
        return {}
    model = music_style.fit(
        [(seq.audio, seq.feature_names) for seq in labelled],
        [seq.style for seq in labelled],
        labelled[0].fps,
        song_names=[seq.name for seq in labelled],
    )
    counts = ", ".join(f"{style} {n}" for style, n in model.trained_on.items())
    log.info("music-style model fitted on the train songs (%s)", counts)
    return {
        "styles": list(model.styles),
        "music_style": model.to_dict(),
        "sequence_styles": {seq.name: seq.style for seq in labelled},
    }


def train_labels(sequences) -> list[str]:
    """The styles a model learns from train ``sequences`` (their ``.style``): sorted, or []
    when they hold fewer than two (one style is no choice: the model is trained as before)."""
    labels = sorted({seq.style for seq in sequences if seq.style})
    return labels if len(labels) >= 2 else []


def style_index(styles: list[str], style: str | None) -> int:
    """The row of ``style`` among ``styles``; ``len(styles)`` ("no style") for None, an
    unlabelled sequence, or a style training lacked."""
    return styles.index(style) if style in styles else len(styles)


def style_columns(frames: int, styles: list[str] | tuple, style: str | None) -> np.ndarray:
    """(frames, len(styles)): 1 in the column of ``style``, 0 elsewhere (all 0 for None, an
    unlabelled sequence or a style not in ``styles``): what the recurrent models read
    beside the audio features."""
    out = np.zeros((frames, len(styles)), dtype=np.float32)
    index = style_index(list(styles), style)
    if index < len(styles):
        out[:, index] = 1.0
    return out


def style_weights(groups: np.ndarray):
    """Sampling weights (torch, float64) of windows whose style indices are ``groups``:
    style-balanced batches, each style drawn as often as any other (on m2d's train split
    60 % of the windows are waltz, 10 % cha-cha), unlabelled windows as one more group.
    None (uniform over windows) when there is one group."""
    import torch

    counts = np.bincount(groups)
    if np.count_nonzero(counts) < 2:
        return None
    return torch.from_numpy(1.0 / counts[groups]).double()


def known_styles(payload: dict) -> list[str]:
    """The styles a checkpoint knows ([] for one trained without style labels)."""
    return list(payload.get("styles") or [])


@dataclass
class StyleChoice:
    """The style a dance is made in: asked for by name, or inferred from the song."""

    style: str
    source: str  # "auto" (inferred) or "requested"
    confidence: float | None = None  # the music-style model's probability (auto)
    probabilities: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict:
        """What the dance file's metadata records."""
        out = {"style": self.style, "style_source": self.source}
        if self.confidence is not None:
            out["style_confidence"] = round(self.confidence, 4)
        return out


def choose_style(
    payload: dict,
    requested: str | None,
    audio: np.ndarray,
    checkpoint: str | Path,
    song: str = "the song",
) -> StyleChoice | None:
    """The style to dance ``song`` (raw audio features ``audio``) in, or None when the
    checkpoint knows no styles. ``requested``: a style name, ``auto`` or None (= auto when
    the checkpoint knows styles). Errors are one line naming ``checkpoint``."""
    styles = known_styles(payload)
    if not styles:
        if requested is None:
            return None
        if requested.lower() == AUTO:
            log.warning("%s was trained without style labels: --style auto ignored", checkpoint)
            return None
        raise ModelError(
            f"{checkpoint} was trained without style labels, so it cannot dance "
            f"{requested!r}; drop --style, or retrain on shards built from a sources sheet "
            "with a style column"
        )
    if requested is not None and requested.lower() != AUTO:
        name = requested.lower()  # the sheet's labels are lower case
        if name not in styles:
            raise ModelError(
                f"unknown style {requested!r}; {checkpoint} knows {', '.join(styles)} (or auto)"
            )
        return StyleChoice(name, "requested")
    from kakashi.models.stats import Stats
    from kakashi.music_style import MusicStyle

    stats = Stats.from_dict(payload["stats"])
    model = MusicStyle.from_dict(payload["music_style"])
    prediction = model.predict(audio, list(stats.feature_names), fps=stats.fps, song=song)
    log.info("%s: style %s (confidence %.2f)", song, prediction.style, prediction.confidence)
    return StyleChoice(
        prediction.style, AUTO, prediction.confidence, dict(prediction.probabilities)
    )
