"""Write the evaluation: metrics.json, metrics.md (Markdown table) and one PNG per plot.

Plots (in ``OUT/plots/``, one file each so Snakemake ``report()`` can caption them):
``bar_<metric>.png`` per metric with the ground-truth row marked,
``quality.png``, the motion-quality columns (liveliness, freeze, jitter, foot skating,
travel) as one panel each, and ``beat_timeline.png``, music beats against motion beats
for one sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kakashi.atomic import atomic_output, atomic_write_text
from kakashi.evaluate.beats import motion_beats, motion_speed
from kakashi.evaluate.harness import EvalDance

# Metric -> (column title, better direction). Diversity: higher is better, but the
# ground-truth value is the target; a model far above it is noisy, not creative.
COLUMNS = {
    "fid_k": ("FID_k train-ref", "lower"),
    "fid_g": ("FID_g train-ref", "lower"),
    "div_k": ("Div_k", "higher"),
    "div_g": ("Div_g", "higher"),
    "bas": ("BAS", "higher"),
    "pfc": ("PFC", "lower"),
}
# Motion-quality columns (kakashi.evaluate.quality), after the ones above and "clips":
# key -> (title, better direction, format). "one": nearest 1 (the ground truth) is best.
QUALITY_COLUMNS = {
    "liveliness": ("liveliness", "one", "ratio"),
    "freeze_max_s": ("freeze max s", "lower", "seconds"),
    "freeze_share": ("frozen %", "lower", "percent"),
    "jitter": ("jitter", "lower", "ratio"),
    "skate_rate": ("skate %", "lower", "percent"),
    "skate_ratio": ("skate ×GT", "lower", "ratio"),
    "travel_ratio": ("travel", "one", "ratio"),
}
# Without a ground-truth row (or without its travel) a ratio column shows its raw value.
RAW_COLUMNS = {
    "liveliness": ("speed_m_s", ("speed m/s", "", "speed")),
    "jitter": ("jerk_m_s3", ("jerk m/s³", "", "decimal")),
    "skate_ratio": None,  # the rate is already shown
    "travel_ratio": ("travel_m_min", ("travel m/min", "", "decimal")),
}
# The columns a replay cannot win (kakashi.evaluate.columns), in a second table:
# key -> (title, better direction, format).
HELDOUT_COLUMNS = {
    "fid_k_heldout": ("FID_k", "lower", "fid"),
    "fid_k_heldout_ratio": ("FID_k ×real", "lower", "ratio"),
    "fid_g_heldout": ("FID_g", "lower", "fid"),
    "fid_g_heldout_ratio": ("FID_g ×real", "lower", "ratio"),
    "style_accuracy": ("style %", "higher", "percent"),
    "copy_share": ("copy %", "lower", "percent"),
    "longest_replay_s": ("longest replay s", "lower", "seconds"),
    "c_t": ("C_T", "", "decimal"),
    "variety": ("variety", "one", "ratio"),
    "penetration_cm": ("penetration cm", "lower", "decimal"),
    "floating_share": ("floating %", "lower", "percent"),
}
ARROW = {"lower": "↓", "higher": "↑", "one": "≈1", "": ""}
# The timeline shows the song's first seconds: beyond ~20 s the beat lines merge.
TIMELINE_S = 20.0


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def better() -> dict[str, str]:
    """The better direction of every column's metric, for metrics.json."""
    out = {key: direction for key, (_, direction) in COLUMNS.items()}
    out.update({key: direction for key, (_, direction, _) in QUALITY_COLUMNS.items()})
    out.update({key: direction for key, (_, direction, _) in HELDOUT_COLUMNS.items()})
    return out


def quality_columns(result: dict) -> list[tuple[str, str, str, str]]:
    """The quality columns of this table: (row key, title, direction, format).

    Ratios with a ground-truth row; the raw values they divide without one (and travel in
    m/min when ground truth does not travel, i.e. its root is not measured).
    """
    rows = {row["name"]: row for row in result["rows"]}
    reference = rows.get(result.get("quality_reference") or "")
    columns = []
    for key, (title, direction, kind) in QUALITY_COLUMNS.items():
        if key in RAW_COLUMNS and (reference is None or reference.get(key) is None):
            if RAW_COLUMNS[key] is None:
                continue
            key, (title, direction, kind) = RAW_COLUMNS[key]
        columns.append((key, title, direction, kind))
    return columns


def _fmt_quality(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "percent":
        return f"{100 * value:.1f}"
    if kind == "speed":
        return f"{value:.3f}"
    if kind in ("seconds", "decimal"):
        return f"{value:.1f}"
    if kind == "fid":
        return _fmt(value)
    return f"{value:.2f}"


def markdown_table(result: dict) -> str:
    """The table: one row per set, arrows for the better direction, ground truth marked."""
    quality = quality_columns(result)
    head = ["method", *(f"{title} {ARROW[d]}" for title, d in COLUMNS.values()), "clips"]
    head += [f"{title} {ARROW[d]}".strip() for _, title, d, _ in quality]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        name = row["name"]
        if name == "ground_truth":
            name = "**ground truth** (real test vs reference)"
        cells = [name, *(_fmt(row[key]) for key in COLUMNS), str(row["clips"])]
        cells += [_fmt_quality(row.get(key), kind) for key, _, _, kind in quality]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("quality_reference"):
        quality_note = (
            "Motion quality, per whole dance: liveliness (joint speed), jitter (jerk), "
            "skate ×GT and travel are ratios to the ground-truth row (1 = as the real "
            "dances); freeze max s is the longest freeze of any dance, frozen % and skate % "
            "shares of the time."
        )
    else:
        quality_note = (
            "Motion quality, per whole dance, raw (no ground-truth row to divide by): mean "
            "joint speed, longest freeze, share of time frozen, mean jerk, share of time a "
            "foot skates, root travel."
        )
    notes = [
        "",
        f"Clips of {result['clip_s']:g} s; reference: {result['reference']['source']} "
        f"({result['reference']['dances']} dances, {result['reference']['clips']} clips). "
        "Ground truth is the noise floor: real dances scored like a model.",
        "FID and Div use features standardised with the reference set's mean and std; "
        "Div is best near the ground-truth value. Definitions: docs/evaluation.md.",
        quality_note,
    ]
    notes += [f"Note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines + notes + heldout_table(result)) + "\n"


def heldout_table(result: dict) -> list[str]:
    """The second table: held-out FID, style, novelty, variety, ground contact."""
    rows = [row for row in result["rows"] if "fid_k_heldout" in row]
    if not rows:
        return []
    held = result.get("heldout") or {}
    head = ["method", *(f"{t} {ARROW[d]}".strip() for t, d, _ in HELDOUT_COLUMNS.values())]
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        name = {"ground_truth": "**ground truth** (the reference)",
                "real_val": "**real line** (val split)"}.get(row["name"], row["name"])  # fmt: skip
        cells = [name]
        for key, (_, _, kind) in HELDOUT_COLUMNS.items():
            value = row.get(key)
            if key.startswith("fid_") and row["name"] == "ground_truth":
                cells.append("ref")
            else:
                cells.append(_fmt_quality(value, kind))
        lines.append("| " + " | ".join(cells) + " |")
    real = held.get("real_line") or {}
    lines += [
        "",
        f"Held-out: FID against the real test dances ({held.get('reference_clips')} clips of "
        f"{held.get('clip_s'):g} s every {held.get('hop_s'):g} s); ×real divides by the real "
        f"line (val-split dances: FID_k {_fmt(real.get('fid_k'))}, FID_g "
        f"{_fmt(real.get('fid_g'))}). style %: windows classified as the song's style "
        "(ground truth is the ceiling). copy %: 1-s windows nearer the train set than the "
        "5th percentile of the real test windows (ground truth 5 % by construction); longest "
        "replay: the longest run continuing one train dance; C_T < 0 copies, > 0 "
        "underfits (Meehan et al. 2020). variety: distance between takes of one song / "
        "between real dances (0 = the seed changes nothing). penetration and floating: the "
        "lowest joint more than 5 cm under / over the dance's own floor.",
    ]
    return lines


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
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def quality_plot(result: dict, path: Path) -> Path:
    """One panel per quality column of the table, bars per row, values written on the bars.

    Ratio panels draw the ground-truth level 1; the ground-truth bar is hatched.
    """
    plt = _plt()
    columns = quality_columns(result)
    rows = result["rows"]
    names = [row["name"] for row in rows]
    ncols = 4
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * (0.55 * len(rows) + 1.9), 3.0 * nrows), squeeze=False
    )
    for ax, (key, title, direction, kind) in zip(axes.flat, columns, strict=False):
        values = [row.get(key) for row in rows]
        heights = [np.nan if v is None else (100 * v if kind == "percent" else v) for v in values]
        colours = ["#dd8452" if n == "ground_truth" else "#4c72b0" for n in names]
        bars = ax.bar(range(len(rows)), heights, color=colours)
        for bar, name, value in zip(bars, names, values, strict=True):
            if name == "ground_truth":
                bar.set_hatch("//")
            label = _fmt_quality(value, kind)
            height = 0.0 if value is None else bar.get_height()
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, height),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 1),
                textcoords="offset points",
            )
        if kind == "ratio":
            ax.axhline(1.0, color="#dd8452", ls="--", lw=1)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=7)
        arrow = {"one": " (≈1 is best)", "lower": " (lower is better)"}.get(direction, "")
        ax.set_title(f"{title}{arrow}", fontsize=9)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    reference = "ratios to ground truth (dashed: 1)" if result.get("quality_reference") else "raw"
    fig.suptitle(f"Motion quality per row, whole dances; {reference}", fontsize=10)
    # Fixed margins for the rotated row names: tight_layout would cost ~0.4 s here.
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.04, right=0.99, top=1 - 0.6 / height, bottom=0.8 / height,
                        hspace=0.7, wspace=0.25)  # fmt: skip
    _save_figure(fig, path)
    plt.close(fig)
    return path


def style_plots(result: dict, folder: Path) -> list[Path]:
    """One confusion matrix per row (true style of the song x predicted style)."""
    plt = _plt()
    written = []
    for row in result["rows"]:
        confusion = row.get("style_confusion")
        if not confusion:
            continue
        classes, counts = confusion["classes"], np.array(confusion["counts"])
        fig, ax = plt.subplots(figsize=(1.0 * len(classes) + 2.2, 0.9 * len(classes) + 1.4))
        ax.imshow(counts, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set_xlabel("predicted style", fontsize=8)
        ax.set_ylabel("style of the song", fontsize=8)
        accuracy = row.get("style_accuracy")
        ax.set_title(f"{row['name']}: style {_fmt_quality(accuracy, 'percent')} %", fontsize=9)
        fig.tight_layout()
        path = folder / f"style_{row['name']}.png"
        _save_figure(fig, path)
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
    _save_figure(fig, path)
    plt.close(fig)
    return path


def write(result: dict, out_dir: Path, timeline: tuple[str, dict[str, EvalDance]] | None) -> dict:
    """Write metrics.json, metrics.md and the plots; return the written paths by kind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written = {"json": out_dir / "metrics.json", "markdown": out_dir / "metrics.md"}
    written["plots"] = bar_plots(result, plots)
    written["plots"].append(quality_plot(result, plots / "quality.png"))
    written["plots"] += style_plots(result, plots)
    if timeline is not None and timeline[1]:
        written["plots"].append(
            timeline_plot(timeline[0], timeline[1], plots / "beat_timeline.png")
        )
    # Atomic, and metrics.json last: a crash never leaves a complete-looking but partial
    # table under the names the workflow checks.
    atomic_write_text(written["markdown"], markdown_table(result))
    atomic_write_text(written["json"], json.dumps(result, indent=2) + "\n")
    return written


def _save_figure(fig, path: Path) -> None:
    """Plots appear whole or not at all, like every other output (kakashi.atomic)."""
    with atomic_output(path) as temporary:
        fig.savefig(temporary, dpi=110)
