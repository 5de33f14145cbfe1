"""Measure the edits of ``kakashi generate`` (docs/editing.md) on real data: the jerk of
the real mocap, and for each trained model, on each test song of the shards, the seams of
a continuation, an in-between span, keyframes and a kept upper body.

Run from the repository root (the m2d run's shards and models)::

    .venv/bin/python bench/editing.py [--shards results/m2d/shards]
        [--models results/m2d/models] [--split test]

Printed:

- mocap: the largest joint jerk of each frame (world positions, third difference, m/s^3)
  over every shard of every split: median, 95th, 99th and 99.5th percentile (the 99.5th
  is the seam target);
- per model: the largest frame jerk of its unedited dances (after their first 10 frames,
  where a model blends its start pose in): what the model makes without any edit;
- per model and edit: the kept frames bit-identical (yes/no), the largest seam jerk over
  the test songs (within ``BLEND_S`` of a seam, :func:`kakashi.models.editing.seam_jerk`),
  the 99.5th percentile of the edited dance's own frame jerk (mean over songs: what the
  model makes anyway), the mean keyframe error (cm) and the seconds (generation +
  enforcement; a shared 2-core machine's figures vary).

Each song's edits: continue its first half to the whole song; regenerate 40-60 % of it;
pass through 3 poses of another test dance (at 25, 50 and 75 %); keep its upper body.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kakashi.dance import Dance  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.editing import (  # noqa: E402
    Constraints,
    Keyframe,
    add_keyframes,
    body_part,
    continuation,
    inbetween,
    keyframe_error,
    seam_jerk,
)
from kakashi.models.generate import dance_for_audio  # noqa: E402
from kakashi.shards import list_shards, read_shard  # noqa: E402


def frame_jerk(world: np.ndarray, fps: float) -> np.ndarray:
    return np.linalg.norm(np.diff(world, 3, axis=0), axis=2).max(axis=1) * fps**3


def mocap(shards: Path) -> None:
    jerks = []
    for split in ("train", "val", "test"):
        for path in list_shards(shards, split):
            arrays, meta = read_shard(path, ["pose", "root"])
            world = arrays["pose"].reshape(-1, 17, 3) + arrays["root"][:, None]
            jerks.append(frame_jerk(world, float(meta.get("fps", 30))))
    jerk = np.concatenate(jerks)
    p50, p95, p99, p995 = np.percentile(jerk, [50, 95, 99, 99.5])
    print(
        f"mocap: {len(jerks)} dances, {len(jerk)} frames; largest joint jerk of a frame "
        f"(m/s^3): median {p50:.0f}, 95th {p95:.0f}, 99th {p99:.0f}, 99.5th {p995:.0f}"
    )


def edits(model, audio: np.ndarray, other: Dance, seed: int):
    """(name, constraints, dance, seconds) of each edit of one song."""
    fps = model.stats.fps
    plain = dance_for_audio(model, audio, model.stats.mean_pose(), seed)
    yield "none", Constraints.free(len(plain)), plain, 0.0
    frames = len(plain)
    half = Dance(plain.pose[: frames // 2], plain.root[: frames // 2], fps)
    keys = Constraints.free(frames)
    times = [round(frames * q) / fps for q in (0.25, 0.5, 0.75)]
    add_keyframes(
        keys, [Keyframe(t, other.pose[round(t * fps) % len(other)], "b") for t in times], fps
    )
    plans = {
        "continue": continuation(half, frames, "bench"),
        "regenerate": inbetween(plain, 0.4 * frames / fps, 0.6 * frames / fps, "bench"),
        "keyframes": keys,
        "keep upper": body_part(plain, "upper", frames, "bench"),
    }
    for name, constraints in plans.items():
        started = time.perf_counter()
        dance = dance_for_audio(
            model, audio, model.stats.mean_pose(), seed + 1, constraints=constraints
        )
        yield name, constraints, dance, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=REPO / "results/m2d/shards")
    parser.add_argument("--models", type=Path, default=REPO / "results/m2d/models")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    mocap(args.shards)
    songs = []
    for path in list_shards(args.shards, args.split):
        arrays, meta = read_shard(path, ["audio", "pose", "root"])
        pose = arrays["pose"].reshape(-1, 17, 3)
        songs.append((path.stem, arrays["audio"], Dance(pose, arrays["root"], meta.get("fps", 30))))
    for checkpoint in sorted(args.models.glob("*.pt")):
        if checkpoint.name.endswith(".last.pt"):
            continue
        model = load_model(checkpoint)
        rows: dict[str, list] = {}
        for index, (_, audio, _) in enumerate(songs):
            other = songs[(index + 1) % len(songs)][2]  # another real dance's poses
            for name, constraints, dance, seconds in edits(model, audio, other, 0):
                exact = constraints.exact
                kept = np.array_equal(dance.pose[exact], constraints.pose[exact])
                kept &= np.array_equal(dance.root[exact], constraints.root[exact])
                if name == "keep upper":
                    upper = list(range(7, 17))
                    kept = np.array_equal(dance.pose[:, upper], constraints.pose[:, upper])
                own = frame_jerk(dance.world()[10:], dance.fps)  # after the start's blend-in
                p995 = own.max() if name == "none" else np.percentile(own, 99.5)
                rows.setdefault(name, []).append(
                    (
                        kept,
                        seam_jerk(dance, constraints),
                        keyframe_error(dance.pose, constraints),
                        p995,
                        seconds,
                        dance.duration_s,
                    )
                )
        for name, values in rows.items():
            kept, jerk, error, p995, seconds, duration = (
                np.array(v) for v in zip(*values, strict=True)
            )
            same = "yes" if kept.all() else "NO"
            if name == "none":
                print(f"{checkpoint.stem:12s} unedited: the largest frame jerk of its dances "
                      f"{p995.max():.0f} m/s^3 (after their first 10 frames)")  # fmt: skip
                continue
            print(f"{checkpoint.stem:12s} {name:11s} kept bit-identical: {same}"
                  f"; seam jerk max {jerk.max():.0f} m/s^3; the dance's 99.5th percentile "
                  f"{p995.mean():.0f}; keyframe error {100 * error.mean():.2f} cm"
                  f"; {seconds.sum():.1f} s for {duration.sum():.0f} s of dance")  # fmt: skip


if __name__ == "__main__":
    main()
