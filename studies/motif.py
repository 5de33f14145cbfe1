"""Train motif on shards, dance the test split, evaluate, time generation, check long songs.

Run from the repository root::

    .venv/bin/python studies/motif.py --shards results/m2d/shards -o /tmp/motif-run
        [--set vq_steps=800 --set top_k=32 | --settings '{"parts": 1}']
        [--checkpoint /tmp/motif-run/motif.pt]  # skip training, reuse a checkpoint

Prints: the training time; the evaluation table (``kakashi evaluate``: ground truth,
random retrieval, mean pose, motif); per test song the mean joint speed (m/s, root-centred
joints), liveliness (speed / ground truth's) and longest freeze (kakashi.evaluate.quality);
the same on non-dance songs (``--songs``); the time to generate a 3-minute song, features
included; and a 10-minute song's speed and longest freeze per minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from kakashi.dance import Dance  # noqa: E402
from kakashi.evaluate.quality import frozen_frames, joint_speed, longest_run, mean_jerk  # noqa: E402
from kakashi.models import motif, motif_train  # noqa: E402
from kakashi.models.config import resolve  # noqa: E402
from kakashi.models.data import Stats, load_training_data, read_shard  # noqa: E402
from kakashi.models.generate import song_features  # noqa: E402

SONGS = REPO.parent / "shared" / "data" / "music_librosa"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "m2d" / "shards")
    parser.add_argument("-o", "--out", type=Path, default=Path("/tmp/motif-bench"))
    parser.add_argument("--settings", default="{}", help="JSON object of settings (or a file)")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE (JSON value)")
    parser.add_argument("--checkpoint", type=Path, help="reuse a trained checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument("--temperature", type=float, help="override the sampling temperature")
    parser.add_argument("--top-k", type=int, help="override top-k")
    parser.add_argument("--smooth", type=float, help="override the smoothing sigma (frames)")
    parser.add_argument("--songs", type=Path, default=SONGS, help="folder of non-dance songs")
    parser.add_argument(
        "--song", type=Path, default=REPO / "data/demo/music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long song")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-eval", action="store_true", help="skip kakashi evaluate")
    return parser.parse_args()


def settings_of(args: argparse.Namespace) -> dict:
    text = args.settings
    settings = json.loads(Path(text).read_text() if Path(text).is_file() else text)
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = json.loads(value)
    return settings


def speed_profile(dance: Dance) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame joint speed (m/s) and frozen frames, as ``kakashi evaluate`` defines them
    (kakashi.evaluate.quality: root-centred speed; a freeze is under 0.1 m/s after a
    running median)."""
    world = dance.world()
    return joint_speed(world, dance.fps), frozen_frames(world, dance.fps)


def longest_freeze(frozen: np.ndarray, fps: float) -> float:
    return longest_run(frozen) / fps


def jerk(dance: Dance) -> float:
    """Mean magnitude of the third difference of world joints (m/s^3)."""
    return mean_jerk(dance.world(), dance.fps)


def train_or_load(args, settings: dict) -> tuple[torch.nn.Module, Stats, dict]:
    if args.checkpoint:
        payload = torch.load(args.checkpoint, weights_only=True)
        print(f"checkpoint {args.checkpoint}")
    else:
        train, val, stats = load_training_data(args.shards, mirror=True)
        frames = sum(len(s.audio) for s in train)
        print(f"train: {len(train)} sequences (mirrors included), {frames} frames; val: {len(val)}")
        started = time.perf_counter()
        config = resolve("motif", {}, settings)  # the schema's defaults, then these
        result = motif_train.fit(config, train, val, stats, torch.device("cpu"))
        seconds = time.perf_counter() - started
        print(f"TRAINING TIME {seconds:.0f} s ({seconds / 60:.1f} min)")
        payload = {
            **result,
            "stats": stats.to_dict(),
            "settings": settings,
            "train_seconds": seconds,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(payload, args.out / "motif.pt")
        for entry in result["history"]:
            print("  ", {k: round(v, 4) for k, v in entry.items()})
    net = motif.build(payload["arch"])
    net.load_state_dict(payload["model"])
    return net.eval(), Stats.from_dict(payload["stats"]), payload


def gen_kwargs(args) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "smooth": args.smooth}


def dance_test_split(args, net, stats) -> tuple[Path, dict]:
    folder = args.out / "dances"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    gen_speed, gt_speed, gen_jerk, gt_jerk = [], [], [], []
    for path in sorted((args.shards / "split=test").glob("*.parquet")):
        arrays, _ = read_shard(path, ["audio", "pose", "root"])
        pose, root = motif.generate_motion(
            net, stats, arrays["audio"], stats.mean_pose(), args.seed, **gen_kwargs(args)
        )
        dance = Dance(pose, root, stats.fps)
        dance.save(folder / f"{path.stem}.npz")
        truth = Dance(arrays["pose"].reshape(-1, 17, 3), arrays["root"], stats.fps)
        (s_gen, f_gen), (s_gt, f_gt) = speed_profile(dance), speed_profile(truth)
        gen_speed.append(s_gen.mean())
        gt_speed.append(s_gt.mean())
        gen_jerk.append(jerk(dance))
        gt_jerk.append(jerk(truth))
        rows[path.stem] = (
            s_gen.mean(),
            s_gt.mean(),
            longest_freeze(f_gen, stats.fps),
            longest_freeze(f_gt, stats.fps),
        )
    print("\nper test song: speed m/s (gt), liveliness, longest freeze s (gt)")
    for name, (sg, st, fg, ft) in rows.items():
        print(f"  {name[:40]:40s} {sg:.3f} ({st:.3f})  {sg / st:.2f}  {fg:.2f} ({ft:.2f})")
    summary = {
        "liveliness": float(np.mean(gen_speed) / np.mean(gt_speed)),
        "gt_speed": float(np.mean(gt_speed)),
        "jitter": float(np.mean(gen_jerk) / np.mean(gt_jerk)),
        "longest_freeze": max(r[2] for r in rows.values()),
    }
    print(
        f"TEST liveliness {summary['liveliness']:.2f}  jitter (jerk / gt) {summary['jitter']:.2f}  "
        f"longest freeze {summary['longest_freeze']:.2f} s"
    )
    return folder, summary


def evaluate(args, folder: Path) -> None:
    out = args.out / "eval"
    command = [
        str(REPO / ".venv" / "bin" / "kakashi"),
        "evaluate",
        "--reference",
        str(args.shards),
        "--generated",
        f"motif={folder}",
        "-o",
        str(out),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    print(f"\nevaluation ({time.perf_counter() - started:.0f} s): {out / 'metrics.md'}")
    print((out / "metrics.md").read_text())


def features_of(song: Path, stats: Stats) -> np.ndarray:
    return song_features(song, stats, "motif").values


def other_songs(args, net, stats, gt_speed: float) -> None:
    songs = sorted(args.songs.glob("*.ogg")) if args.songs.is_dir() else []
    if not songs:
        return
    print("\nnon-dance songs: liveliness (speed / test gt), longest freeze s")
    for song in songs:
        audio = features_of(song, stats)
        pose, root = motif.generate_motion(
            net, stats, audio, stats.mean_pose(), args.seed, **gen_kwargs(args)
        )
        speed, frozen = speed_profile(Dance(pose, root, stats.fps))
        freeze = longest_freeze(frozen, stats.fps)
        print(f"  {song.name[:50]:50s} {speed.mean() / gt_speed:.2f}  {freeze:.2f}")


def timing(args, net, stats, gt_speed: float) -> None:
    import librosa
    import soundfile

    sr = 22050
    samples, _ = librosa.load(args.song, sr=sr, mono=True)
    for minutes in (3.0,):
        target = args.out / f"song_{minutes:g}min.wav"
        repeat = int(np.ceil(minutes * 60 * sr / len(samples)))
        soundfile.write(target, np.tile(samples, repeat)[: int(minutes * 60 * sr)], sr)
        started = time.perf_counter()
        audio = features_of(target, stats)
        featured = time.perf_counter()
        pose, root = motif.generate_motion(
            net, stats, audio, stats.mean_pose(), args.seed, **gen_kwargs(args)
        )
        done = time.perf_counter()
        print(
            f"\nTIMING {minutes:g}-minute song: features {featured - started:.2f} s + generation "
            f"{done - featured:.2f} s = {done - started:.2f} s"
        )
    # The long song: the 3-minute song's features repeated.
    frames = int(args.minutes * 60 * stats.fps)
    long_audio = np.tile(audio, (int(np.ceil(frames / len(audio))), 1))[:frames]
    started = time.perf_counter()
    pose, root = motif.generate_motion(
        net, stats, long_audio, stats.mean_pose(), args.seed, **gen_kwargs(args)
    )
    print(f"{args.minutes:g}-minute song generated in {time.perf_counter() - started:.2f} s")
    dance = Dance(pose, root, stats.fps)
    dance.save(args.out / "long.npz")
    speed, frozen = speed_profile(dance)
    minute = int(60 * stats.fps)
    print("minute: liveliness, longest freeze s, root distance from start m")
    for m in range(int(np.ceil(len(speed) / minute))):
        part = speed[m * minute : (m + 1) * minute]
        dist = np.linalg.norm(root[min((m + 1) * minute, len(root) - 1)] - root[0])
        freeze = longest_freeze(frozen[m * minute : (m + 1) * minute], stats.fps)
        print(f"  {m + 1:2d}: {part.mean() / gt_speed:.2f}  {freeze:.2f}  {dist:.2f}")
    print(f"LONG SONG longest freeze {longest_freeze(frozen, stats.fps):.2f} s")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(args.threads)
    settings = settings_of(args)
    print("settings:", json.dumps(settings))
    net, stats, _ = train_or_load(args, settings)
    folder, summary = dance_test_split(args, net, stats)
    if not args.no_eval:
        evaluate(args, folder)
    other_songs(args, net, stats, summary["gt_speed"])
    timing(args, net, stats, summary["gt_speed"])


if __name__ == "__main__":
    main()
