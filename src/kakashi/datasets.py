"""Sources sheets for public dance datasets that users already have on disk.

``kakashi sheet m2d DATA_DIR -o SHEET`` writes the sheet of the "Dance with Melody"
dataset (Tang et al., ACM MM 2018) in its joints + audio layout: ``manifest.json``,
``joints/NAME.npy`` (T, 23, 3) at 25 fps and ``audio/NAME.mp3``, where motion frame i
plays at audio time ``audio_offset_s + i / 25``. Each row's ``style`` is the manifest's
(cha-cha, rumba, tango, waltz).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kakashi.atomic import atomic_write_text
from kakashi.errors import SheetError
from kakashi.sources import stable_split

M2D_COLUMNS = ("id", "source", "audio", "audio_offset_s", "fps", "skeleton", "style", "split")


def m2d_sheet(data_dir: str | Path, out: str | Path, val: float = 0.1, test: float = 0.1) -> int:
    """Write the sources sheet of a Dance-with-Melody folder; returns the number of rows.

    Paths in the sheet are relative to the sheet's folder, so the pair can move together.
    Splits come from a stable hash of each id, as for any sheet row without a split.
    """
    data_dir, out = Path(data_dir), Path(out)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise SheetError(
            f"{manifest_path} does not exist; point the command at the Dance-with-Melody "
            "folder that holds manifest.json, joints/ and audio/"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise SheetError(f"{manifest_path} is not valid JSON: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(M2D_COLUMNS)]
    for entry in sorted(manifest, key=lambda item: item["name"]):
        name = entry["name"]
        joints = data_dir / "joints" / f"{name}.npy"
        audio = data_dir / "audio" / f"{name}.mp3"
        for path in (joints, audio):
            if not path.is_file():
                raise SheetError(f"{manifest_path} lists {name}, but {path} is missing")
        seq = f"m2d-{name}"
        row = {
            "id": seq,
            "source": os.path.relpath(joints, out.parent),
            "audio": os.path.relpath(audio, out.parent),
            "audio_offset_s": f"{float(entry['audio_offset_s']):g}",
            "fps": f"{float(entry.get('fps', 25)):g}",
            "skeleton": "tang23",
            "style": str(entry.get("style") or "").strip().lower(),  # cha-cha, rumba, ...
            "split": stable_split(seq, val, test),
        }
        lines.append("\t".join(row[column] for column in M2D_COLUMNS))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1
