"""How lively each trained model dances to songs outside its training styles.

Issue 13 asks the best model for a liveliness of 0.8-1.25 on the test songs *and* on three
songs that are not dance music of the training styles, with no freeze over 2 s. `kakashi
evaluate` scores the test split; this bench scores any songs: for every checkpoint and song
it generates the whole song (seed 0, from the mean pose, as `kakashi generate` does) and
prints liveliness and jitter against the ground truth of ``--shards``' test split (the
same ratios as `kakashi evaluate`, docs/evaluation.md) and the longest freeze.

Run from the repository root::

    .venv/bin/python studies/songs.py --shards results/m2d/shards \
        results/m2d/models/{motiongraph,motif,rnn}.pt

Songs default to five recordings of ../shared/data/music_librosa that are not ballroom
music: an electronic game tune, a country song, Tchaikovsky's Sugar Plum Fairy, a ragtime
and a drum-and-bass loop (the first three are CC BY, the demo's songs among them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kakashi.evaluate.harness import load_split  # noqa: E402
from kakashi.evaluate.quality import dance_quality, row_quality  # noqa: E402
from kakashi.features import audio_features, settings_of  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.generate import dance_for_audio, start_pose  # noqa: E402

MUSIC = REPO.parent / "shared" / "data" / "music_librosa"
DEFAULT_SONGS = [
    MUSIC / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg",
    MUSIC / "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg",
    MUSIC / "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg",
    MUSIC / "442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime.hq.ogg",
    MUSIC / "admiralbob77_-_Choice_-_Drum-bass.hq.ogg",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--shards", type=Path, required=True, help="ground truth: test split")
    parser.add_argument("--songs", nargs="+", type=Path, default=DEFAULT_SONGS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--long-minutes", type=float, default=10.0,
        help="also dance the first song's features repeated to this many minutes (0: skip)",
    )  # fmt: skip
    args = parser.parse_args()

    truth = row_quality((dance.world, dance.fps) for dance in load_split(args.shards, "test"))
    print(
        f"ground truth ({args.shards} test split): {truth['speed_m_s']:.3f} m/s, "
        f"jerk {truth['jerk_m_s3']:.0f} m/s^3, longest freeze {truth['freeze_max_s']:.1f} s"
    )
    print("| model | song | seconds | liveliness | longest freeze s | jitter | generate s |")
    print("|---|---|---|---|---|---|---|")
    features_of: dict[tuple, object] = {}
    for checkpoint in args.checkpoints:
        model = load_model(checkpoint)
        stats = model.stats
        kinds, n_mfcc = settings_of(stats.feature_names)
        for song in args.songs:
            key = (song, stats.fps, stats.hop_length, tuple(stats.feature_names))
            if key not in features_of:
                features_of[key] = audio_features(
                    song,
                    fps=stats.fps,
                    hop_length=stats.hop_length,
                    feature_set=kinds,
                    n_mfcc=n_mfcc,
                )
            features = features_of[key]
            started = time.perf_counter()
            dance = dance_for_audio(model, features.values, start_pose("mean", stats), args.seed)
            seconds = time.perf_counter() - started
            quality = dance_quality(dance.world(), dance.fps)
            print(
                f"| {checkpoint.stem} | {song.name.split('.')[0][:40]} | {quality.seconds:.0f} | "
                f"{quality.speed_m_s / truth['speed_m_s']:.2f} | "
                f"{quality.longest_freeze_s:.1f} | {quality.jerk_m_s3 / truth['jerk_m_s3']:.2f} | "
                f"{seconds:.2f} |",
                flush=True,
            )
        if args.long_minutes > 0:
            long_song(model, features_of, args, truth)


def long_song(model, features_of: dict, args, truth: dict) -> None:
    """The first song's features repeated to ``--long-minutes``: liveliness per minute (a
    model that drifts or settles shows it here) and the longest freeze of the whole dance."""
    import numpy as np

    stats = model.stats
    key = (args.songs[0], stats.fps, stats.hop_length, tuple(stats.feature_names))
    values = features_of[key].values
    frames = round(args.long_minutes * 60 * stats.fps)
    audio = np.concatenate([values] * (frames // len(values) + 1))[:frames]
    dance = dance_for_audio(model, audio, start_pose("mean", stats), args.seed)
    world, minute = dance.world(), round(60 * stats.fps)
    per_minute = [
        dance_quality(world[lo : lo + minute], stats.fps)
        for lo in range(0, frames - minute + 1, minute)
    ]
    lively = [q.speed_m_s / truth["speed_m_s"] for q in per_minute]
    print(
        f"{model.name}: {args.long_minutes:g} minutes of {args.songs[0].name}: liveliness "
        f"{min(lively):.2f}-{max(lively):.2f} per minute, longest freeze "
        f"{dance_quality(world, stats.fps).longest_freeze_s:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
