"""Joint arrays: ``.npy`` (T, J, 3) or ``.npz`` holding one such array, in a named layout.

The layout comes from the sheet's ``skeleton`` column (h36m17, coco17, tang23); with none
given, the joint count decides when only one layout has it. Units are detected from the
body size; the frame rate comes from the sheet's ``fps`` column (or ``fps`` in an .npz).
Dance-with-Melody arrays (tang23) keep the dataset's root height problem, so they get the
same root-height fix as its JSON files.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from kakashi.errors import MotionError
from kakashi.motion import RawMotion
from kakashi.motion.layouts import ARRAY_LAYOUTS, ARRAY_TOES, array_layout_for

_NPZ_KEYS = ("joints", "positions", "keypoints3d", "pose", "poses", "arr_0")


def _load(path: Path) -> tuple[np.ndarray, float | None]:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MotionError(f"{path} is not a readable numpy file ({exc}); re-export it") from exc
    if isinstance(data, np.ndarray):
        return data, None
    with data:
        fps = float(data["fps"]) if "fps" in data.files else None
        key = next((k for k in _NPZ_KEYS if k in data.files), None)
        if key is None:
            arrays = [k for k in data.files if data[k].ndim == 3]
            if len(arrays) != 1:
                raise MotionError(
                    f"{path}: cannot tell which array holds the joints (keys {data.files}); "
                    f"name it one of {', '.join(_NPZ_KEYS)}"
                )
            key = arrays[0]
        return data[key], fps


def read_array(path: Path, layout: str | None, source_fps: float | None) -> RawMotion:
    """Canonical joints of a joint array file (see the module doc)."""
    array, file_fps = _load(path)
    if array.ndim != 3 or array.shape[2] != 3 or len(array) < 2:
        raise MotionError(
            f"{path}: expected joint positions of shape (frames, joints, 3), got {array.shape}"
        )
    if layout is None or (isinstance(layout, float)) or layout == "":
        layout = array_layout_for(array.shape[1])
        if layout is None:
            raise MotionError(
                f"{path}: {array.shape[1]} joints matches no known layout; set the skeleton "
                f"column to one of {', '.join(ARRAY_LAYOUTS)}"
            )
    layout = layout.lower()
    if layout not in ARRAY_LAYOUTS:
        raise MotionError(
            f"{path}: unknown skeleton layout {layout!r}; use one of {', '.join(ARRAY_LAYOUTS)}"
        )
    weights = ARRAY_LAYOUTS[layout]
    if weights.shape[1] != array.shape[1]:
        raise MotionError(
            f"{path}: layout {layout} has {weights.shape[1]} joints, the file has "
            f"{array.shape[1]}; fix the skeleton column"
        )
    fps = source_fps if source_fps else file_fps
    if not fps:
        raise MotionError(f"{path}: the array has no frame rate; give it in the fps column")
    array = array.astype(np.float64)
    toes = None
    if ARRAY_TOES[layout] is not None:
        left, right = ARRAY_TOES[layout]
        toes = np.stack([array[:, list(left)].mean(1), array[:, list(right)].mean(1)], axis=1)
    return RawMotion(
        joints=np.einsum("kj,tjc->tkc", weights, array),
        source_fps=float(fps),
        meta={"format": "array", "layout": layout, "frames_in_file": len(array)},
        toes=toes,
        root_height_suspect=layout == "tang23",
    )
