"""Write the evaluation: metrics.json, metrics.md (Markdown table) and one PNG per plot.

Plots (in ``OUT/plots/``, one file each so Snakemake ``report()`` can caption them):
``bar_<metric>.png`` per metric with the ground-truth row marked, and
``beat_timeline.png``, music beats against motion beats for one sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kakashi.atomic import atomic_write_text
from kakashi.evaluate.beats import motion_beats, motion_speed
from kakashi.evaluate.harness import EvalDance

# Metric -> (column title, better direction). Diversity: higher is better, but the
# ground-truth value is the target; a model far above it is noisy, not creative.
COLUMNS = {
    "fid_k": ("FID_k", "lower"),
    "fid_g": ("FID_g", "lower"),
    "div_k": ("Div_k", "higher"),
    "div_g": ("Div_g", "higher"),
    "bas": ("BAS", "higher"),
    "pfc": ("PFC", "lower"),
}
ARROW = {"lower": "↓", "higher": "↑"}
# The timeline shows the song's first seconds: beyond ~20 s the beat lines merge.
TIMELINE_S = 20.0


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def markdown_table(result: dict) -> str:
    """The table: one row per set, arrows for the better direction, ground truth marked."""
    head = ["method", *(f"{title} {ARROW[d]}" for title, d in COLUMNS.values()), "clips"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        name = row["name"]
        if name == "ground_truth":
            name = "**ground truth** (real test vs reference)"
        cells = [name, *(_fmt(row[key]) for key in COLUMNS), str(row["clips"])]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        f"Clips of {result['clip_s']:g} s; reference: {result['reference']['source']} "
        f"({result['reference']['dances']} dances, {result['reference']['clips']} clips). "
        "Ground truth is the noise floor: real dances scored like a model.",
        "FID and Div use features standardised with the reference set's mean and std; "
        "Div is best near the ground-truth value. Definitions: docs/evaluation.md.",
    ]
    notes += [f"Note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines + notes) + "\n"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plots(result: dict, folder: Path) -> list[Path]:
    """One bar chart per metric; the ground-truth bar is hatched and its level drawn."""
    plt = _plt()
    written = []
    rows = result["rows"]
    for key, (title, direction) in COLUMNS.items():
        names = [row["name"] for row in rows]
        values = [np.nan if row[key] is None else row[key] for row in rows]
        fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2.5, 3.2))
        colours = ["#4c72b0" if n != "ground_truth" else "#dd8452" for n in names]
        bars = ax.bar(range(len(rows)), values, color=colours)
        for bar, name in zip(bars, names, strict=True):
            if name == "ground_truth":
                bar.set_hatch("//")
                ax.axhline(bar.get_height(), color="#dd8452", ls="--", lw=1, label="ground truth")
        ax.set_xticks(range(len(rows)), names, rotation=20, ha="right")
        ax.set_title(f"{title} ({direction} is better)")
        if "ground_truth" in names:
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = folder / f"bar_{key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def timeline_plot(seq: str, dances: dict[str, EvalDance], path: Path) -> Path:
    """Music beats (vertical lines) against motion beats (dots on the speed curve), per row."""
    plt = _plt()
    fig, axes = plt.subplots(len(dances), 1, figsize=(10, 1.9 * len(dances) + 0.6), squeeze=False)
    for ax, (label, dance) in zip(axes[:, 0], dances.items(), strict=True):
        world = dance.world[: round(TIMELINE_S * dance.fps)]
        speed, times = motion_speed(world, dance.fps)
        beats = motion_beats(world, dance.fps)
        music = dance.music_beats if dance.music_beats is not None else np.array([])
        for t in music[music < len(world) / dance.fps]:
            ax.axvline(t, color="#c44e52", lw=0.8, alpha=0.7)
        ax.plot(times, speed, color="#4c72b0", lw=1)
        ax.plot(beats, np.interp(beats, times, speed), "o", color="#55a868", ms=4)
        ax.set_ylabel("speed m/s", fontsize=8)
        ax.set_title(f"{label}: music beats (red lines), motion beats (green dots)", fontsize=9)
    axes[-1, 0].set_xlabel(f"time in {seq} (s), first {TIMELINE_S:g} s at most")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict, out_dir: Path, timeline: tuple[str, dict[str, EvalDance]] | None) -> dict:
    """Write metrics.json, metrics.md and the plots; return the written paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = {"json": out_dir / "metrics.json", "markdown": out_dir / "metrics.md"}
    written["plots"] = bar_plots(result, plots)
    if timeline is not None and timeline[1]:
        written["plots"].append(
            timeline_plot(timeline[0], timeline[1], plots / "beat_timeline.png")
        )
    # Atomic, and metrics.json last: a crash never leaves a complete-looking but partial
    # table under the names the workflow checks.
    atomic_write_text(written["markdown"], markdown_table(result))
    atomic_write_text(written["json"], json.dumps(result, indent=2) + "\n")
    return written
