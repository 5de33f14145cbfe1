"""Benchmark maskdance on CPU: a 3-minute song (features included, warm) and a 10-minute
song without drift or freeze, with a trained checkpoint.

Run from the repository root::

    .venv/bin/python bench/maskdance.py [--checkpoint results/m2d/models/maskdance.pt]
        [--song PATH] [--threads 1]

- Warm: the checkpoint loaded and the feature code compiled once (a first song), as in a
  running studio; then, best of 3, the features of a 3-minute song (the song file's audio
  repeated to 180 s, written as a WAV once) and the dance (the style chosen from the music
  as `kakashi generate --style auto` does, parallel decoding, guided by the style when the
  checkpoint's ``guidance`` asks for it, the tokenizer's decoder, the finish).
- An edit: the same song with frames 60-90 s regenerated (in-betweening: the rest given).
- Long song: 10 minutes, the longest freeze, the joint speed per minute (drift: it must not
  fall) and how far the root wanders.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import soundfile  # noqa: E402
import torch  # noqa: E402

from kakashi.evaluate.quality import frozen_frames, joint_speed, longest_run  # noqa: E402
from kakashi.features import audio_features, settings_of  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.editing import Constraints  # noqa: E402
from kakashi.models.styles import choose_style  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "results/m2d/models/maskdance.pt")
    parser.add_argument(
        "--song", type=Path, default=REPO / "data/demo/music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
    )
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def song_of(path: Path, seconds: float, folder: Path) -> Path:
    """``path``'s audio repeated or cut to ``seconds``, as a WAV in ``folder``."""
    import librosa

    audio, rate = librosa.load(path, sr=22050, mono=True)
    out = folder / f"song_{int(seconds)}s.wav"
    soundfile.write(out, np.resize(audio, int(seconds * rate)), rate)
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    stats = model.stats
    kinds, n_mfcc = settings_of(stats.feature_names)

    def style_of(audio: np.ndarray) -> str | None:
        choice = choose_style(model.payload, None, audio, args.checkpoint, "the bench song")
        return choice.style if choice else None

    def features(song: Path) -> np.ndarray:
        return audio_features(
            song, fps=stats.fps, hop_length=stats.hop_length, feature_set=kinds, n_mfcc=n_mfcc
        ).values

    with tempfile.TemporaryDirectory() as tmp:
        three = song_of(args.song, 180, Path(tmp))
        ten = song_of(args.song, 600, Path(tmp))
        audio = features(three)  # warm-up: numba compiles, the model runs once
        model.generate_motion(audio[:500], stats.mean_pose(), 0, style=style_of(audio[:500]))
        best = {"features": np.inf, "dance": np.inf}
        for take in range(3):
            started = time.perf_counter()
            audio = features(three)
            middle = time.perf_counter()
            style = style_of(audio)
            pose, root = model.generate_motion(audio, stats.mean_pose(), take, style=style)
            done = time.perf_counter()
            best["features"] = min(best["features"], middle - started)
            best["dance"] = min(best["dance"], done - middle)
        total = best["features"] + best["dance"]
        guidance = model.net.arch.get("guidance", 1.0)
        print(
            f"checkpoint {args.checkpoint}, {args.threads} thread(s), "
            f"style {style}, guidance {guidance}"
        )
        print(
            f"3-minute song, warm: {total:.2f} s (features {best['features']:.2f} s, "
            f"dance {best['dance']:.2f} s; best of 3)"
        )

        span = Constraints.free(len(audio))
        keep = np.ones(len(audio), bool)
        keep[int(60 * stats.fps) : int(90 * stats.fps)] = False
        span.pose[keep], span.root[keep], span.exact[keep] = pose[keep], root[keep], True
        started = time.perf_counter()
        edited, _ = model.generate_motion(
            audio, stats.mean_pose(), 7, style=style, constraints=span
        )
        seconds = time.perf_counter() - started
        err = np.linalg.norm(edited[keep] - pose[keep], axis=-1).mean() * 100
        print(
            f"in-betweening 60-90 s of it: {seconds:.2f} s; kept frames before the generic "
            f"copy {err:.1f} cm from the given ones (mean over joints)"
        )

        audio = features(ten)
        started = time.perf_counter()
        pose, root = model.generate_motion(audio, stats.mean_pose(), 0, style=style_of(audio))
        seconds = time.perf_counter() - started
        fps = stats.fps
        frozen = frozen_frames(pose + root[:, None], fps)
        minute = int(60 * fps)
        speeds = [
            float(joint_speed(pose[i : i + minute] + root[i : i + minute, None], fps).mean())
            for i in range(0, len(pose) - minute + 1, minute)
        ]
        print(
            f"10-minute song: {seconds:.2f} s; longest freeze {longest_run(frozen) / fps:.2f} s; "
            f"joint speed per minute {min(speeds):.2f}-{max(speeds):.2f} m/s "
            f"(first {speeds[0]:.2f}, last {speeds[-1]:.2f}); root within "
            f"{np.linalg.norm(root[:, [0, 2]], axis=1).max():.2f} m"
        )


if __name__ == "__main__":
    main()
