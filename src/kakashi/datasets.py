"""Sources sheets for public dance datasets that users already have on disk.

``kakashi sheet m2d DATA_DIR -o SHEET`` writes the sheet of the "Dance with Melody"
dataset (Tang et al., ACM MM 2018) in its joints + audio layout: ``manifest.json``,
``joints/NAME.npy`` (T, 23, 3) at 25 fps and ``audio/NAME.mp3``, where motion frame i
plays at audio time ``audio_offset_s + i / 25``. Each row's ``style`` is the manifest's
(cha-cha, rumba, tango, waltz), and the split is stratified by style (:func:`stratified_splits`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kakashi.atomic import atomic_write_text
from kakashi.errors import SheetError
from kakashi.sources import split_position, stable_split

M2D_COLUMNS = ("id", "source", "audio", "audio_offset_s", "fps", "skeleton", "style", "split")


def stratified_splits(styles: dict[str, str], val: float, test: float) -> dict[str, str]:
    """The split of every id in ``styles`` (id -> style), stratified by style.

    Within each style the ids are taken in the order of their stable hash
    (:func:`kakashi.sources.split_position`): the first ``round(n * test)`` go to test, the
    next ``round(n * val)`` to val, the rest to train, with at least one of each where the
    style has three or more sequences. So val holds the same styles as test, and the real
    line of the evaluation (val scored against test, docs/evaluation.md) compares like with
    like: Dance with Melody's hash split put 4 waltzes and the only tango in val against a
    cha-cha, a rumba and 2 waltzes in test, and the real line (FID_k 33.4) lost to a replay
    of random train clips (20.5). A style with fewer than three sequences cannot be split
    three ways: its ids keep their plain hash split (:func:`kakashi.sources.stable_split`),
    as rows without a style do. (Moved into train instead, Dance with Melody's one tango,
    whose root jumps 19 cm in a frame, took the m2d motion graph's held-out FID_k from 32
    to 1842.)
    """
    splits: dict[str, str] = {}
    by_style: dict[str, list[str]] = {}
    for seq, style in styles.items():
        by_style.setdefault(style, []).append(seq)
    for ids in by_style.values():
        ids.sort(key=split_position)
        n = len(ids)
        if n < 3:
            splits.update((seq, stable_split(seq, val, test)) for seq in ids)
            continue
        n_test = max(1, round(n * test)) if test > 0 else 0
        n_val = max(1, round(n * val)) if val > 0 else 0
        for rank, seq in enumerate(ids):
            splits[seq] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return splits


def m2d_sheet(data_dir: str | Path, out: str | Path, val: float = 0.1, test: float = 0.1) -> int:
    """Write the sources sheet of a Dance-with-Melody folder; returns the number of rows.

    Paths in the sheet are relative to the sheet's folder, so the pair can move together.
    Splits are stratified by style (:func:`stratified_splits`), so val and test hold the
    same styles.
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
    styles = {
        f"m2d-{entry['name']}": str(entry.get("style") or "").strip().lower() for entry in manifest
    }
    splits = stratified_splits(styles, val, test)
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
            "style": styles[seq],  # cha-cha, rumba, ...
            "split": splits[seq],
        }
        lines.append("\t".join(row[column] for column in M2D_COLUMNS))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(lines) - 1
