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
- per model: whether a dance made through the edit path with no constraint is
  bit-identical to the unedited one (an edit must not change what is not edited);
- per model and edit: the kept frames bit-identical (yes/no), the largest seam jerk over
  the test songs (within ``BLEND_S`` of a seam, :func:`kakashi.models.editing.seam_jerk`)
  and where it comes from: the largest jerk of the third differences that cross the seam
  (a given and a generated frame), the largest jerk the enforcement adds to the model's
  motion within ``BLEND_S`` (the jerk of the shift, the edited dance minus what the model
  made, on generated frames only) and the largest jerk of the model's own motion on the
  same frames (before enforcement); then the 99.5th percentile of the edited dance's own
  frame jerk (mean over songs: what the model makes anyway), the mean keyframe error (cm)
  and the seconds (generation + enforcement; a shared 2-core machine's figures vary).

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
from kakashi.models import generate  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.editing import (  # noqa: E402
    Constraints,
    Keyframe,
    add_keyframes,
    body_part,
    continuation,
    frame_jerk,
    inbetween,
    keyframe_error,
    seam_jerk,
    seam_stencils,
)
from kakashi.models.generate import dance_for_audio  # noqa: E402
from kakashi.shards import list_shards, read_shard  # noqa: E402

# What the model made before enforcement (pose, root: the arrays generate.py hands to
# ``enforce``), kept by the wrapper below: the seam's jerk is split into the model's own
# and what the enforcement adds.
MADE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _keeping_made(enforce):
    def wrapped(pose, root, constraints, fps):
        MADE["last"] = (np.array(pose, np.float64), np.array(root, np.float64))
        return enforce(pose, root, constraints, fps)

    return wrapped


generate.enforce = _keeping_made(generate.enforce)


def seam_sources(dance: Dance, constraints: Constraints) -> tuple[float, float, float]:
    """(crossing, added, own): the largest jerk (m/s^3) of the third differences across a
    seam (a given and a generated frame); of the shift enforcement adds (the edited dance
    minus what the model made) and of the model's own motion, within BLEND_S of a seam
    (on the frames the model made that are not kept exactly)."""
    near, crossing = seam_stencils(constraints, dance.fps)
    if not near.any():
        return 0.0, 0.0, 0.0
    pose, root = MADE["last"]
    made = pose + root[:, None]
    # Frames of ``made`` the model made: the given ones too where its span began earlier
    # (generate.LEAD_S) or ended one later; elsewhere generate.py filled in the given frames.
    exact = constraints.exact
    own = ~exact
    own[exact] = (pose[exact] != constraints.pose[exact]).any(axis=(1, 2)) | (
        root[exact] != constraints.root[exact]
    ).any(axis=1)
    # Stencils of frames the model made, none of them kept exactly (a keyframe's frame is
    # one: there, what enforcement changes is the shift that reaches it).
    inner = near & (np.convolve(~own | exact, np.ones(4), "valid") == 0)
    world = dance.world().astype(np.float64)
    cross = frame_jerk(world, dance.fps)[crossing].max() if crossing.any() else 0.0
    if not inner.any():
        return float(cross), 0.0, 0.0
    added = frame_jerk(world - made, dance.fps)[inner].max()
    return float(cross), float(added), float(frame_jerk(made, dance.fps)[inner].max())


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
    free = dance_for_audio(
        model, audio, model.stats.mean_pose(), seed, constraints=Constraints.free(frames)
    )
    same = np.array_equal(free.pose, plain.pose) and np.array_equal(free.root, plain.root)
    yield "free", Constraints.free(frames), free, float(same)
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
                if name == "free":
                    rows.setdefault(name, []).append(seconds)
                    continue
                own = frame_jerk(dance.world()[10:], dance.fps)  # after the start's blend-in
                p995 = own.max() if name == "none" else np.percentile(own, 99.5)
                sources = seam_sources(dance, constraints) if name != "none" else (0, 0, 0)
                rows.setdefault(name, []).append(
                    (
                        kept,
                        seam_jerk(dance, constraints),
                        *sources,
                        keyframe_error(dance.pose, constraints),
                        p995,
                        seconds,
                        dance.duration_s,
                    )
                )
        for name, values in rows.items():
            if name == "free":
                same = "yes" if all(values) else "NO"
                print(f"{checkpoint.stem:12s} no constraint through the edit path: "
                      f"bit-identical to the unedited dance: {same}")  # fmt: skip
                continue
            kept, jerk, cross, added, made, error, p995, seconds, duration = (
                np.array(v) for v in zip(*values, strict=True)
            )
            same = "yes" if kept.all() else "NO"
            if name == "none":
                print(f"{checkpoint.stem:12s} unedited: the largest frame jerk of its dances "
                      f"{p995.max():.0f} m/s^3 (after their first 10 frames)")  # fmt: skip
                continue
            print(f"{checkpoint.stem:12s} {name:11s} kept bit-identical: {same}"
                  f"; seam jerk max {jerk.max():.0f} m/s^3 (across the seam "
                  f"{cross.max():.0f}, enforcement adds {added.max():.0f}, the model's own "
                  f"{made.max():.0f}); the dance's 99.5th percentile "
                  f"{p995.mean():.0f}; keyframe error {100 * error.mean():.2f} cm"
                  f"; {seconds.sum():.1f} s for {duration.sum():.0f} s of dance")  # fmt: skip


if __name__ == "__main__":
    main()
