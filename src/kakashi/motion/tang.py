"""Dance with Melody (Tang, Jia, Mao, ACM MM 2018) in its original JSON layout.

A sequence folder holds ``skeletons.json`` ({"length", "center" (T, 3), "skeletons"
(T, 23, 3)}: root-centred joints plus the root trajectory, Y up, about cm, 25 fps) and
``config.json`` ({"start_position", "end_position"}, in 25 fps frames of the song). As in
the authors' drawing code, motion frame i plays at audio time (start_position + i) / 25 s,
so ``audio_offset_s = start_position / 25``. The path may be the folder, its
skeletons.json, or a renamed ``NAME_skeletons.json`` with ``NAME_config.json`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kakashi.errors import MotionError
from kakashi.motion import RawMotion
from kakashi.motion.layouts import ARRAY_LAYOUTS, ARRAY_TOES

FPS = 25.0


def _files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return path / "skeletons.json", path / "config.json"
    name = path.name
    if name.endswith("skeletons.json"):
        return path, path.with_name(name[: -len("skeletons.json")] + "config.json")
    raise MotionError(
        f"{path}: a Dance-with-Melody motion is a skeletons.json (with config.json beside "
        "it) or its folder; other JSON is not a motion format Kakashi reads"
    )


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MotionError(f"{path} is missing; Dance-with-Melody needs it") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MotionError(f"{path} is not valid JSON ({exc}); the file may be truncated") from exc


def read_tang(path: Path, source_fps: float | None = None) -> RawMotion:
    """Canonical joints of a Dance-with-Melody sequence (see the module doc)."""
    skeletons_path, config_path = _files(path)
    data = _json(skeletons_path)
    try:
        skeletons = np.asarray(data["skeletons"], dtype=np.float64)
        center = np.asarray(data["center"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise MotionError(
            f"{skeletons_path}: expected 'skeletons' (T, 23, 3) and 'center' (T, 3) ({exc})"
        ) from exc
    if skeletons.ndim != 3 or skeletons.shape[1:] != (23, 3) or center.shape != (len(skeletons), 3):
        raise MotionError(
            f"{skeletons_path}: expected skeletons (T, 23, 3) and center (T, 3), got "
            f"{skeletons.shape} and {center.shape}"
        )
    meta: dict = {"format": "tang2018_json", "layout": "tang23", "frames_in_file": len(skeletons)}
    if "length" in data and int(data["length"]) != len(skeletons):
        raise MotionError(
            f"{skeletons_path}: says length {data['length']} but holds {len(skeletons)} frames; "
            "the file is incomplete"
        )
    fps = float(source_fps) if source_fps else FPS
    if config_path.exists():
        config = _json(config_path)
        if "start_position" in config:
            meta["audio_offset_s"] = float(config["start_position"]) / FPS
            meta["config_span_frames"] = int(config.get("end_position", 0)) - int(
                config["start_position"]
            )
    world = skeletons + center[:, None, :]
    left, right = ARRAY_TOES["tang23"]
    toes = np.stack([world[:, list(left)].mean(1), world[:, list(right)].mean(1)], axis=1)
    return RawMotion(
        joints=np.einsum("kj,tjc->tkc", ARRAY_LAYOUTS["tang23"], world),
        source_fps=fps,
        meta=meta,
        toes=toes,
        root_height_suspect=True,
    )
