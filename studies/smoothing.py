"""The pose stage's temporal filter, measured: known answers on real motion capture with
video-like noise, then the real videos before and after, and the filter's cost.

Run from the repository root (``../shared/data`` holds the mocap and the videos)::

    .venv/bin/python studies/smoothing.py [--noise-from results/pose] [--json out.json]

1. **Noise model.** The real videos' poses are estimated without the filter
   (``pose.smoothing.method: none``; cached under ``--cache``). Their high-frequency
   residual (pose minus a Savitzky-Golay fit, window 15, order 3) is measured per joint and
   axis as a power spectrum (Welch), divided by the residual's own transfer function where
   that passes at least half the power, and held flat below (where dance motion hides the
   noise). The spectrum is written to ``tests/video_noise.json`` (the tests read it).
2. **Known answers.** Real mocap (Dance with Melody, CMU subject 131), root-centred at 30
   fps, plus noise drawn with that spectrum; each filter setting is scored against the
   clean motion: joint position error, jerk / speed ratio, lag of the joint speed
   (cross-correlation with the clean one) and the peak speed kept at real accents.
3. **Real videos.** Jerk / speed ratio and mean joint speed per video before and after the
   default filter; the filter's time as a share of pose estimation.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]  # kakashi, the known answers

from kakashi.dance import Dance  # noqa: E402
from kakashi.pose import smoothing  # noqa: E402
from known_answers import smoothing as answers  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FPS, NOISE_FILE = answers.FPS, answers.NOISE_FILE
# Residual fit: the window the issue measured with (0.5 s at 30 fps).
SG_WINDOW, SG_ORDER = 15, 3
WELCH_FRAMES = 64
# The real videos: (name, file, cut to 30 fps by kakashi cut, or resampled after the pose
# because the file has no audio track for kakashi cut).
VIDEOS = (
    ("demo (mgt dancer)", REPO / "data" / "demo" / "dancer.avi"),
    ("qengineering Dance", SHARED / "video_qengineering_dance" / "Dance.mp4"),
    ("footskate hip-hop", SHARED / "video_footskate_dance" / "dance.mp4"),
)


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- noise


def savgol_residual(pose: np.ndarray) -> np.ndarray:
    from scipy.signal import savgol_filter

    return pose - savgol_filter(pose, SG_WINDOW, SG_ORDER, axis=0, mode="interp")


def residual_transfer(freqs: np.ndarray) -> np.ndarray:
    """|1 - H_SG(f)|^2: the share of a signal's power at f that the residual keeps."""
    from scipy.signal import freqz, savgol_coeffs

    coeffs = savgol_coeffs(SG_WINDOW, SG_ORDER)
    _, response = freqz(coeffs, worN=freqs, fs=FPS)
    # The centred fit has zero phase: remove the window's delay before subtracting.
    delay = np.exp(1j * 2 * np.pi * freqs / FPS * (SG_WINDOW // 2))
    return np.abs(1 - response * delay) ** 2


def measure_noise(poses: list[np.ndarray]) -> dict:
    """The video noise spectrum (17, 3, F) in m^2/Hz, pooled over ``poses`` by length."""
    from scipy.signal import welch

    total = None
    weight = 0
    for pose in poses:
        residual = savgol_residual(pose.astype(np.float64))
        nperseg = min(WELCH_FRAMES, len(pose))
        freqs, psd = welch(residual, fs=FPS, nperseg=nperseg, axis=0)  # (F, 17, 3)
        if nperseg != WELCH_FRAMES:  # a short clip: onto the common frequency grid
            grid = np.fft.rfftfreq(WELCH_FRAMES, 1 / FPS)
            psd = np.stack(
                [[np.interp(grid, freqs, psd[:, j, k]) for k in range(3)] for j in range(17)]
            ).transpose(2, 0, 1)
            freqs = grid
        total = psd * len(pose) if total is None else total + psd * len(pose)
        weight += len(pose)
    psd = total / weight
    transfer = residual_transfer(freqs)
    passed = transfer >= 0.5
    first = int(np.argmax(passed))
    noise = psd / np.maximum(transfer, 1e-12)[:, None, None]
    noise[:first] = noise[first]  # below the measurable band: flat
    return {
        "freqs_hz": freqs.tolist(),
        "psd_m2_per_hz": noise.transpose(1, 2, 0).tolist(),  # (17, 3, F)
        "measurable_from_hz": float(freqs[first]),
        "frames": weight,
    }


# ----------------------------------------------------------------------------- data


def mocap_sequences(limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Root-centred real mocap at 30 fps: Dance with Melody and CMU subject 131."""
    from kakashi.motion import read_motion

    found = []
    m2d = SHARED / "m2d_tang2018" / "joints"
    for path in sorted(m2d.glob("*.npy"))[:limit]:
        found.append((f"m2d/{path.stem}", read_motion(path, FPS, "tang23", 25).pose))
    cmu = SHARED / "mocap_cmu_131_bvh11"
    for path in sorted(cmu.glob("*.bvh"))[:limit]:
        found.append((f"cmu/{path.stem}", read_motion(path, FPS).pose))
    return [(name, pose.astype(np.float64)) for name, pose in found]


def video_pose(video: Path, cache: Path) -> tuple[Dance, float]:
    """The unfiltered pose of a video at 30 fps (cut like the workflow when the file has
    audio, else estimated at its own rate and resampled) and the estimation time in s."""
    from kakashi.motion.resample import resample

    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"{video.stem}.npz"
    timing = cache / f"{video.stem}.seconds"
    if not out.exists():
        clip = cache / f"{video.stem}.mp4"
        kakashi = [sys.executable, "-m", "kakashi"]
        env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
        cut = subprocess.run(
            [*kakashi, "cut", str(video), "-o", str(clip), "--audio-output",
             str(cache / f"{video.stem}.wav"), "--fps", str(FPS)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        source = clip if cut.returncode == 0 else video
        started = time.perf_counter()
        subprocess.run(
            [*kakashi, "pose", str(source), "-o", str(out), "--workers", "1",
             "--smoothing-method", "none"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        timing.write_text(f"{time.perf_counter() - started:.3f}\n")
    dance = Dance.load(out)
    if abs(dance.fps - FPS) > 1e-6:
        pose = resample(dance.pose, dance.fps, FPS)
        conf = resample(dance.conf, dance.fps, FPS)
        joint_conf = (
            None if dance.joint_conf is None else resample(dance.joint_conf, dance.fps, FPS)
        )
        dance = Dance(pose, np.zeros((len(pose), 3)), FPS, conf, dance.meta, joint_conf)
    return dance, float(timing.read_text()) if timing.exists() else float("nan")


# ----------------------------------------------------------------------------- settings


def bench_settings() -> list[tuple[str, dict]]:
    """The rows of the known-answer table: unfiltered, the default and its neighbours,
    Savitzky-Golay as the issue measured it, and the one-euro filter around its best."""
    base = answers.default_settings()
    unfiltered = {**base, "method": "none", "project_bones": False}
    rows: list[tuple[str, dict]] = [("unfiltered (clean + noise)", unfiltered)]
    polynomial = {**base, "method": "local_polynomial"}
    for window, degree in ((15, 3), (15, 4), (21, 4), (21, 6), (27, 6), (31, 6), (35, 6)):
        rows.append(
            (
                f"local polynomial, {window} frames, degree {degree}",
                {**polynomial, "window_s": window / FPS, "degree": degree},
            )
        )
    rows.append(
        ("local polynomial 27/6 without bone projection", {**polynomial, "project_bones": False})
    )
    one_euro = {**base, "method": "one_euro"}
    rows.append(
        (
            "one-euro causal (one pass), 1 Hz, beta 1",
            {**one_euro, "method": "one_euro_causal", "min_cutoff": 1.0, "beta": 1.0},
        )
    )
    for min_cutoff, beta in ((0.5, 0.0), (1.0, 1.0), (1.0, 4.0), (2.0, 2.0), (3.0, 4.0)):
        rows.append(
            (
                f"one-euro, {min_cutoff:g} Hz, beta {beta:g}",
                {**one_euro, "min_cutoff": min_cutoff, "beta": beta},
            )
        )
    return rows


def known_answers(noisy, rows) -> dict[str, dict]:
    """Every setting on every noisy mocap sequence, scored and averaged by frames."""
    results = {}
    frames = sum(len(clean) for _, clean, _ in noisy)
    for label, setting in rows:
        totals: dict[str, float] = {}
        for _, clean, observed in noisy:
            for key, value in answers.score(clean, observed, setting).items():
                totals[key] = totals.get(key, 0.0) + value * len(clean)
        results[label] = {key: value / frames for key, value in totals.items()}
    results["clean mocap (reference)"] = {
        "error_mm": 0.0,
        "ratio": sum(answers.jerk_speed_ratio(c, FPS) * len(c) for _, c, _ in noisy) / frames,
        "speed": sum(answers.mean_speed(c, FPS) * len(c) for _, c, _ in noisy) / frames,
        "lag": 0.0, "peak": 1.0, "accent": 1.0, "accent_clean": 1.0,
    }  # fmt: skip
    return results


def drop_frames(observed: np.ndarray, seed: int, share: float = 0.05):
    """``observed`` with ``share`` of its frames lost in gaps of 3-10 frames, filled the way
    the pose stage fills them (linear interpolation), and the conf (0 in the gaps)."""
    rng = np.random.default_rng(seed)
    frames = len(observed)
    conf = np.ones(frames)
    while (conf == 0).mean() < share:
        start = int(rng.integers(0, frames - 10))
        conf[start : start + int(rng.integers(3, 11))] = 0
    found = conf > 0
    index = np.arange(frames)
    filled = observed.copy().reshape(frames, -1)
    for column in range(filled.shape[1]):
        filled[~found, column] = np.interp(index[~found], index[found], filled[found, column])
    return filled.reshape(observed.shape), conf


def gap_answers(noisy, setting: dict) -> dict[str, float]:
    """Joint error (mm) in and out of 5 % lost frames, with and without the confidence
    weighting (without: every frame weighs 1)."""
    out = {}
    for label, min_weight in (("confidence-weighted", setting["min_weight"]), ("equal", 1.0)):
        errors = {"gap": [], "other": []}
        for i, (_, clean, observed) in enumerate(noisy):
            filled, conf = drop_frames(observed, seed=100 + i)
            filtered = smoothing.smooth_pose(
                filled, FPS, conf, None, {**setting, "min_weight": min_weight}
            )
            error = np.linalg.norm(filtered[:, 1:] - clean[:, 1:], axis=-1).mean(axis=1)
            errors["gap"].append(error[conf == 0])
            errors["other"].append(error[conf > 0])
        out[label] = {k: float(np.concatenate(v).mean() * 1000) for k, v in errors.items()}
    return out


# ----------------------------------------------------------------------------- output


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kakashi-bench-smoothing"))
    parser.add_argument("--limit", type=int, default=None, help="mocap files per dataset")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep-noise", action="store_true", help="reuse tests/video_noise.json")
    args = parser.parse_args()
    print(f"# studies/smoothing.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")

    videos = [(name, *video_pose(path, args.cache)) for name, path in VIDEOS if path.exists()]
    if args.keep_noise and NOISE_FILE.exists():
        noise = answers.load_noise()
    else:
        noise = measure_noise([dance.pose for _, dance, _ in videos])
        NOISE_FILE.write_text(json.dumps(noise) + "\n")
    from scipy.integrate import trapezoid

    psd = np.asarray(noise["psd_m2_per_hz"])
    freqs = np.asarray(noise["freqs_hz"])
    rms = np.sqrt(trapezoid(psd, freqs, axis=-1))  # (17, 3)
    print(
        f"\nnoise model: {noise['frames']} video frames, measurable from "
        f"{noise['measurable_from_hz']:.1f} Hz; rms per axis (x, y, z) over joints: "
        + ", ".join(f"{v * 1000:.1f}" for v in rms[1:].mean(axis=0))
        + " mm"
    )

    mocap = mocap_sequences(args.limit)
    frames = sum(len(p) for _, p in mocap)
    print(f"\n## Known answers: {len(mocap)} mocap sequences, {frames / FPS / 60:.1f} min + noise")
    rows = bench_settings()
    noisy = answers.noisy_mocap(mocap, noise)
    results = known_answers(noisy, rows)
    # The same settings on the real videos (no known answer there: their shake only).
    for label, setting in rows:
        results[label]["videos"] = [
            answers.jerk_speed_ratio(
                answers.filter_pose(
                    dance.pose.astype(np.float64), setting, dance.conf, dance.joint_conf
                ),
                FPS,
            )
            for _, dance, _ in videos
        ]
    results["clean mocap (reference)"]["videos"] = []
    print(
        "\n| setting | joint error mm | jerk/speed | mean speed m/s | lag frames "
        "| joint peaks kept | body accents kept | accents kept, clean input "
        "| videos' jerk/speed (" + ", ".join(name for name, _, _ in videos) + ") |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label in ["clean mocap (reference)", *[label for label, _ in rows]]:
        r = results[label]
        print(
            f"| {label} | {r['error_mm']:.1f} | {r['ratio']:.0f} | {r['speed']:.3f} | "
            f"{r['lag']:+.2f} | {r['peak']:.1%} | {r['accent']:.1%} | {r['accent_clean']:.1%} | "
            + " / ".join(f"{v:.0f}" for v in r["videos"])
            + " |"
        )
    gaps = gap_answers(noisy, answers.default_settings())
    print("\nDefault with 5 % of frames lost in gaps of 3-10 frames (interpolated, conf 0):")
    print("\n| weighting | joint error in gaps mm | elsewhere mm |\n|---|---|---|")
    for label, errors in gaps.items():
        print(f"| {label} | {errors['gap']:.1f} | {errors['other']:.1f} |")

    base = answers.default_settings()
    print(f"\n## Real videos, default filter {base}")
    print("\n| video | frames | jerk/speed before | after | mean speed before m/s | after |")
    print("|---|---|---|---|---|---|")
    video_rows = []
    for name, dance, _ in videos:
        after = answers.filter_pose(
            dance.pose.astype(np.float64), base, dance.conf, dance.joint_conf
        )
        row = {
            "video": name,
            "frames": len(dance),
            "ratio_before": answers.jerk_speed_ratio(dance.pose, FPS),
            "ratio_after": answers.jerk_speed_ratio(after, FPS),
            "speed_before": answers.mean_speed(dance.pose, FPS),
            "speed_after": answers.mean_speed(after, FPS),
        }
        video_rows.append(row)
        print(
            f"| {name} | {row['frames']} | {row['ratio_before']:.0f} | {row['ratio_after']:.0f} "
            f"| {row['speed_before']:.3f} | {row['speed_after']:.3f} |"
        )

    print("\n## Shake against the backend's per-joint confidence (why the fit weighs it)")
    print("\nMean residual (pose minus the Savitzky-Golay fit of the noise model), mm:\n")
    bins = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01))
    print("| video | " + " | ".join(f"conf {lo:g}-{min(hi, 1):g}" for lo, hi in bins) + " |")
    print("|---|" + "---|" * len(bins))
    for name, dance, _ in videos:
        residual = np.linalg.norm(savgol_residual(dance.pose.astype(np.float64)), axis=-1)
        conf = dance.joint_conf
        cells = [
            f"{residual[:, 1:][mask].mean() * 1000:.1f} ({mask.mean():.0%})"
            if (mask := (conf[:, 1:] >= lo) & (conf[:, 1:] < hi)).any()
            else "–"
            for lo, hi in bins
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n## Cost: the filter beside pose estimation (1 worker)")
    print("\n| video | frames | pose estimation s | filter s | share |")
    print("|---|---|---|---|---|")
    cost_rows = []
    for name, dance, pose_s in videos:
        started = time.perf_counter()
        for _ in range(5):
            answers.filter_pose(dance.pose.astype(np.float64), base, dance.conf, dance.joint_conf)
        filter_s = (time.perf_counter() - started) / 5
        cost_rows.append({"video": name, "pose_s": pose_s, "filter_s": filter_s})
        print(
            f"| {name} | {len(dance)} | {pose_s:.1f} | {filter_s:.3f} | {filter_s / pose_s:.2%} |"
        )

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "known_answers": results,
                    "gaps": gaps,
                    "videos": video_rows,
                    "cost": cost_rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
