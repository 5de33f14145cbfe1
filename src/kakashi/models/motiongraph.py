"""motiongraph: a beat-synchronous motion graph that dances any song with real motion.

Learned generators need hours of data; a motion graph needs none of that. The library
(built by ``motiongraph_train``, the model's "training") is the train split's motion cut
at its own music's beats into segments of ``beats`` beats, mirrored copies included, each
with its pooled music features and, as edges, the segments whose first frame is nearest to
the frame that follows it (pose and velocity, an approximate nearest-neighbour search).
A segment's natural successor (the next segment of the same recording) is a free edge.

For a song (ChoreoMaster, SIGGRAPH 2021, in plain form):

1. **Spans**: the song's beats (the ``beat`` column of its audio features, found as for the
   training shards) grouped ``beats`` at a time (or, for a song whose tempo no segment
   fits, as many as make a span most segments fit: half time for a fast song); before the
   first beat, after the last one and across beat-less gaps, spans of the library's typical
   segment length.
2. **Choice**: one segment per span by dynamic programming (exact Viterbi over the sparse
   graph, ``viterbi``) minimising music fit (RMS distance of the pooled, normalised audio
   features), tempo fit (log of the time-warp factor; segments that would need more than
   ``max_warp`` are excluded), transition cost (metres; 0 along a recording) and a
   repetition penalty for segments used in the last ``repeat_window`` spans (the song is
   solved in chunks with lookahead so the penalty can see the past). Gumbel noise of scale
   ``temperature`` on the music fit makes every seed a different dance.
3. **Assembly**: each segment is time-warped onto its span (linear interpolation), so its
   beats land on the song's beats. At a seam that is not a natural succession the offset
   between where the last segment was going and where the new one starts decays over
   ``blend_s`` with matched position and velocity (a cubic Hermite: inertialization-like
   displacement blending); the new segment keeps its own velocities. While a segment has a
   foot planted, the root takes up whatever moved that foot differently from the segment
   (a blend, the bone projection), so a planted foot slides exactly as in the source.
   Frame 0 is the start pose, blended into the first segment. Bones are projected to the
   training lengths (before the feet are settled). The root is the integral of the
   segments' own horizontal root velocities (no leak: real steps do not drift) and their
   height above the floor.

Inference only: building the library is in ``motiongraph_train``.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import math

import numpy as np
import torch
from torch import nn

from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.kinematics import ANKLES, project_bones, settle_planted_feet
from kakashi.models.stats import Stats

log = logging.getLogger("kakashi.models.motiongraph")

BEAT_COLUMN = "beat"
# Spans solved at once, and spans of lookahead, when the repetition penalty is on.
CHUNK_SPANS = 16
LOOKAHEAD_SPANS = 8


class MotionLibrary(nn.Module):
    """The segments and their transition graph, as buffers: a checkpoint's ``model``.

    Frames (``pose`` root-centred, ``root`` absolute, ``contact`` per ankle) of every
    library recording, one after the other; segment ``i`` is frames ``seg_start[i]`` to
    ``seg_start[i] + seg_length[i]`` (exclusive) and the frame after it is always stored.
    """

    def __init__(self, arch: dict) -> None:
        super().__init__()
        self.arch = dict(arch)
        frames, segments = int(arch["frames"]), int(arch["segments"])
        width, music = int(arch["neighbours"]), int(arch["music_dim"])
        joints = skeleton.NUM_JOINTS
        self.register_buffer("pose", torch.zeros(frames, joints, 3))
        self.register_buffer("root", torch.zeros(frames, 3))
        self.register_buffer("contact", torch.zeros(frames, 2, dtype=torch.bool))
        for name in ("seg_start", "seg_length", "seg_sequence", "seg_next", "seg_beat"):
            self.register_buffer(name, torch.zeros(segments, dtype=torch.long))
        self.register_buffer("seg_music", torch.zeros(segments, music))
        self.register_buffer("seg_speed", torch.zeros(segments))  # mean joint speed, m/s
        self.register_buffer("sequence_style", torch.zeros(len(arch["sequences"]), music))
        self.register_buffer("edge_to", torch.zeros(segments, width, dtype=torch.long))
        self.register_buffer("edge_cost", torch.zeros(segments, width))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every buffer as a numpy array (generation works in numpy)."""
        return {name: buf.cpu().numpy() for name, buf in self.named_buffers()}


def build(arch: dict) -> MotionLibrary:
    return MotionLibrary(arch)


# ---------------------------------------------------------------- spans of the song


def beat_frames(audio: np.ndarray, feature_names: list[str]) -> np.ndarray:
    """Frames of the beats in raw audio features (T, F): the one-hot ``beat`` column."""
    if BEAT_COLUMN not in feature_names:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.asarray(audio)[:, feature_names.index(BEAT_COLUMN)] > 0.5)


def beats_per_span(beats: np.ndarray, per: int, lengths: np.ndarray, max_warp: float) -> int:
    """Beats of the song per span: ``per`` (the library's), unless almost no segment would fit
    such a span within ``max_warp``; then the grouping (half, double, quadruple) most
    segments fit. A song twice as fast as every dance of the library is danced in half
    time, as a dancer would, instead of at double speed.
    """
    if len(beats) < 2:
        return per
    interval = float(np.median(np.diff(beats)))

    def fitting(group: int) -> int:
        return int(np.sum(np.abs(np.log(group * interval / lengths)) <= np.log(max_warp)))

    if fitting(per) >= max(5, 0.02 * len(lengths)):
        return per
    options = sorted({max(1, per // 2), per, 2 * per, 4 * per})
    return max(options, key=fitting)


def song_spans(beats: np.ndarray, frames: int, per_span: int, typical: int) -> np.ndarray:
    """(J, 2) start/stop frames covering ``0..frames`` exactly, one span per ``per_span`` beats.

    Gaps without beats (the intro, the end, a beat tracker's drop-out) are cut into spans of
    about ``typical`` frames; a span shorter than a third of ``typical`` joins its neighbour.
    """
    typical = max(2, int(typical))
    marks = [int(b) for b in np.asarray(beats)[::per_span] if 0 < b < frames]
    edges = [0, *marks, frames]
    bounds = [0]
    for a, b in itertools.pairwise(edges):
        pieces = max(1, round((b - a) / typical))
        bounds += [a + round((b - a) * (i + 1) / pieces) for i in range(pieces)]
    bounds = sorted(set(bounds))
    merged = [bounds[0]]
    for b in bounds[1:]:
        if b - merged[-1] < max(2, typical // 3) and len(merged) > 1 and b != frames:
            continue  # too short: the next boundary closes this span
        merged.append(b)
    if len(merged) > 2 and merged[-1] - merged[-2] < max(2, typical // 3):
        del merged[-2]  # a short last span joins the one before
    if merged[-1] != frames:
        merged.append(frames)
    return np.stack([merged[:-1], merged[1:]], axis=1).astype(np.int64)


def relative_music(values: np.ndarray) -> np.ndarray:
    """Audio features (T, F) standardised over the song itself: what changes within it.

    The music fit compares these, so a segment is chosen because its beat is louder or
    brighter than the rest of *its* song where the new song's is too; absolute timbre is the
    style fit's job. Without this every span of a song chases the same few segments of the
    nearest-sounding recording and the dance jumps at every span.
    """
    values = np.asarray(values, dtype=np.float64)
    return (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-3)


def pool_spans(values: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (T, F) over each span (J, 2): (J, F)."""
    sums = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    lengths = (spans[:, 1] - spans[:, 0])[:, None]
    return (sums[spans[:, 1]] - sums[spans[:, 0]]) / np.maximum(lengths, 1)


# ---------------------------------------------------------------- choosing segments


def viterbi(
    unary: np.ndarray, first: np.ndarray, src: np.ndarray, dst: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, float]:
    """The exact minimum-cost path through a sparse graph, one state per step.

    Total cost = ``first[s0] + unary[0, s0] + sum_j (cost(s_{j-1} -> s_j) + unary[j, s_j])``,
    ``unary`` (J, S), ``first`` (S,), edges ``src -> dst`` with ``cost`` (E,). Returns the
    states (J,) and the total (inf if no path exists).
    """
    steps, states = unary.shape
    if np.any(np.diff(dst) < 0):
        order = np.argsort(dst, kind="stable")
        src, dst, cost = src[order], dst[order], cost[order]
    has_in = np.bincount(dst, minlength=states) > 0
    starts = np.searchsorted(dst, np.flatnonzero(has_in))
    back = np.zeros((steps, states), dtype=np.int32)
    total = first + unary[0]
    for j in range(1, steps):
        reach = total[src] + cost
        best = np.full(states, np.inf)
        if len(reach):
            best[has_in] = np.minimum.reduceat(reach, starts)
        hit = np.flatnonzero(reach <= best[dst])
        # edges are grouped by target: the first hit of each target is its best edge
        first_hit = hit[np.concatenate([[True], np.diff(dst[hit]) != 0])] if len(hit) else hit
        back[j, dst[first_hit]] = src[first_hit]
        total = best + unary[j]
    path = np.zeros(steps, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    score = float(total[path[-1]])
    for j in range(steps - 1, 0, -1):
        path[j - 1] = back[j, path[j]]
    return path, score


def _edges(lib: dict, transition_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge lists of the library graph: nearest-neighbour edges plus free natural successors."""
    segments, width = lib["edge_to"].shape
    src = np.repeat(np.arange(segments), width)
    dst = lib["edge_to"].ravel()
    cost = lib["edge_cost"].ravel().astype(np.float64) * transition_weight
    keep = dst >= 0
    src, dst, cost = src[keep], dst[keep], cost[keep]
    natural = np.flatnonzero(lib["seg_next"] >= 0)
    src = np.concatenate([src, natural])
    dst = np.concatenate([dst, lib["seg_next"][natural]])
    cost = np.concatenate([cost, np.zeros(len(natural))])
    order = np.argsort(dst, kind="stable")  # grouped by target once, for every viterbi call
    return src[order], dst[order], cost[order]


def choose_segments(
    lib: dict,
    arch: dict,
    spans: np.ndarray,
    music: np.ndarray,
    style: np.ndarray,
    first_pose: np.ndarray,
    seed: int,
    allowed: np.ndarray | None = None,
    off_style: np.ndarray | None = None,
) -> np.ndarray:
    """One library segment per span (J,), by Viterbi in chunks with a repetition penalty;
    ``off_style`` (S,): an extra cost per segment (another style's)."""
    rng = np.random.default_rng(seed)
    lengths = (spans[:, 1] - spans[:, 0]).astype(np.float64)
    seg_len = lib["seg_length"].astype(np.float64)
    warp = np.log(lengths[:, None] / seg_len[None, :])  # (J, S): >0 slows a segment down
    fit = _rms_distance(music, lib["seg_music"])  # (J, S)
    noise = -np.log(-np.log(rng.uniform(1e-9, 1.0, size=fit.shape)))  # Gumbel
    style_fit = np.sqrt(np.mean((lib["sequence_style"] - style[None]) ** 2, axis=-1))
    unary = (
        arch["music_weight"] * (fit - arch["temperature"] * noise)
        + arch["style_weight"] * style_fit[lib["seg_sequence"]][None, :]
        + arch["tempo_weight"] * np.abs(warp)
        + arch["stillness_weight"] * stillness(lib["seg_speed"])[None, :]
    )
    if off_style is not None:
        unary = unary + off_style[None, :]
    # Segments are warped by at most max_warp; for a span no segment fits so, the limit is
    # the closest fit plus 10 % (every other cost still counts). The closest *allowed* one:
    # measured against every segment, a restriction (--only, a style) whose segments all
    # fit worse left spans with no finite choice and the search picked arbitrary segments.
    reach = np.abs(warp) if allowed is None else np.where(allowed[None, :], np.abs(warp), np.inf)
    limit = np.maximum(math.log(arch["max_warp"]), reach.min(axis=1) + math.log(1.1))
    unary[reach > limit[:, None]] = np.inf
    src, dst, cost = _edges(lib, arch["transition_weight"])
    starts = lib["pose"][lib["seg_start"]]  # (S, 17, 3)
    first = arch["transition_weight"] * _pose_distance(starts, first_pose[None])

    steps = len(spans)
    window, penalty = int(arch["repeat_window"]), float(arch["repeat_penalty"])
    if penalty <= 0 or window <= 0:
        return viterbi(unary, first, src, dst, cost)[0]
    chosen: list[int] = []
    while len(chosen) < steps:
        lo = len(chosen)
        hi = min(steps, lo + CHUNK_SPANS + LOOKAHEAD_SPANS)
        part = unary[lo:hi].copy()
        recent = chosen[-window:]
        for j in range(hi - lo):
            # segments used within the window before span lo + j (those of this chunk are
            # not known yet: the next chunk sees them)
            used = recent[max(0, len(recent) - (window - j)) :] if j < window else []
            if used:
                part[j, used] += penalty
        if chosen:
            # The chunk goes on from the last chosen segment: along its edges, or (a segment
            # without any) from the frame it was heading to.
            start = np.full(len(first), np.inf)
            out = src == chosen[-1]
            start[dst[out]] = cost[out]
            if not np.isfinite(start + part[0]).any():
                last = chosen[-1]
                heading = lib["pose"][lib["seg_start"][last] + lib["seg_length"][last]]
                start = arch["transition_weight"] * _pose_distance(starts, heading[None])
            path, _ = viterbi(part, start, src, dst, cost)
        else:
            path, _ = viterbi(part, first, src, dst, cost)
        take = len(path) if hi == steps else min(CHUNK_SPANS, len(path))
        chosen += [int(s) for s in path[:take]]
    return np.asarray(chosen, dtype=np.int64)


def stillness(speed: np.ndarray) -> np.ndarray:
    """0 for a segment at least half as lively as the library's median one, rising to 1 for
    a still one.

    Transitions between near-still segments are cheap (small velocities, similar poses), so
    without this the search drifts into standing around wherever the music asks little.
    """
    half = max(0.5 * float(np.median(speed)), 1e-6)
    return np.clip(1.0 - speed / half, 0.0, 1.0)


def _rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS distance of every row of ``a`` (J, F) to every row of ``b`` (S, F): (J, S).
    By the expanded square (one matrix product), not a (J, S, F) array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    square = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(square, 0.0) / a.shape[1])


def _pose_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS joint distance (m) of root-centred poses (..., 17, 3)."""
    return np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1), axis=-1))


# ---------------------------------------------------------------- assembly


def _sample(values: np.ndarray, start: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of library frames ``start + positions`` (fractional)."""
    low = np.floor(positions).astype(np.int64)
    frac = (positions - low).reshape(-1, *([1] * (values.ndim - 1)))
    return values[start + low] * (1 - frac) + values[start + low + 1] * frac


def _hermite(offset: np.ndarray, slope: np.ndarray, frames: int) -> np.ndarray:
    """(frames, ...) offsets starting at ``offset`` with slope ``slope`` (per frame), ending at 0
    with slope 0 after ``frames`` frames: the seam blend."""
    s = (np.arange(frames) / frames).reshape(-1, *([1] * offset.ndim))
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    return h00 * offset + h10 * frames * slope


def assemble(
    lib: dict,
    arch: dict,
    stats: Stats,
    spans: np.ndarray,
    path: np.ndarray,
    first_pose: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) root-centred and root (T, 3) from the chosen segments (see module doc)."""
    frames = int(spans[-1, 1])
    joints = skeleton.NUM_JOINTS
    pose = np.zeros((frames, joints, 3))
    height = np.zeros(frames)
    step_xz = np.zeros((frames, 2))  # root displacement from frame t to t + 1
    planted = np.zeros((frames, 2), dtype=bool)
    feet_step = np.zeros((frames, 2, 3))  # the segments' own ankle motion, frame t to t + 1
    blend = max(1, round(arch["blend_s"] * stats.fps))
    previous = None  # (pose, height) the last segment was heading to, and its last step
    for j, ((lo, hi), seg) in enumerate(zip(spans, path, strict=True)):
        length = hi - lo
        start, seg_length = int(lib["seg_start"][seg]), int(lib["seg_length"][seg])
        positions = np.arange(length + 1) * (seg_length / length)
        positions[-1] = seg_length  # the frame after the segment: where it was heading
        seg_pose = _sample(lib["pose"], start, np.minimum(positions, seg_length - 1e-6))
        seg_pose[-1] = lib["pose"][start + seg_length]
        seg_root = _sample(lib["root"], start, np.minimum(positions, seg_length - 1e-6))
        seg_root[-1] = lib["root"][start + seg_length]
        contact = lib["contact"][start + np.round(positions[:-1]).astype(np.int64)]
        body = np.concatenate([seg_pose, seg_root[:, None, 1:2].repeat(3, axis=2)], axis=1)
        natural = j > 0 and int(lib["seg_next"][path[j - 1]]) == int(seg)
        if j == 0:
            target = np.asarray(first_pose, dtype=np.float64) - first_pose[0]
            offset = np.concatenate([target, body[0, -1:]]) - body[0]
            slope = np.zeros_like(offset)
            span_blend = min(length, max(blend, round(0.5 * stats.fps)))
        elif not natural:
            heading, last_step = previous
            offset = heading - body[0]
            slope = last_step - (body[1] - body[0])
            span_blend = min(length, blend)
        else:
            offset = None
        if offset is not None:
            body[:span_blend] += _hermite(offset, slope, span_blend)
        pose[lo:hi] = body[:length, :joints]
        height[lo:hi] = body[:length, joints, 0]
        step_xz[lo:hi] = np.diff(seg_root[:, [0, 2]], axis=0)
        feet_step[lo:hi] = np.diff(seg_pose[:, list(ANKLES)], axis=0)
        planted[lo:hi] = contact
        previous = (body[length], body[length] - body[length - 1])
    lengths = torch.from_numpy(stats.bone_lengths.astype(np.float32))
    pose = project_bones(torch.from_numpy(pose.astype(np.float32)), lengths).numpy()
    # Keep planted feet planted: where the segment has a foot on the floor, the root takes up
    # whatever moved that foot differently from the segment itself (a seam's blend, the bone
    # projection), so the foot slides over the floor exactly as much as it did in the source.
    # With foot_lock > 0 that share of the source's own glide of a planted foot goes too.
    step_xz[:-1] = settle_planted_feet(
        step_xz[:-1],
        feet_step[:-1, :, [0, 2]],
        np.diff(pose[:, list(ANKLES)], axis=0)[..., [0, 2]],
        planted[:-1],
        arch["foot_lock"],
        stats.fps,
    )
    root = np.zeros((frames, 3))
    root[1:, 0] = np.cumsum(step_xz[:-1, 0])
    root[1:, 2] = np.cumsum(step_xz[:-1, 1])
    root[:, 1] = height
    return pose.astype(np.float32), root.astype(np.float32)


# A style with fewer segments than this (a few bars of one recording) would loop them; the
# dance then uses every style's segments, with a warning.
MIN_STYLE_SEGMENTS = 24


def style_segments(arch: dict, lib: dict, style: str | None) -> np.ndarray | None:
    """(S,) bool: the segments of the recordings labelled ``style``; None for every segment
    (no style asked, or the style has fewer than MIN_STYLE_SEGMENTS: a warning)."""
    if style is None:
        return None
    labels = np.asarray(arch.get("sequence_styles") or [""] * len(arch["sequences"]))
    keep = (labels == style)[lib["seg_sequence"]]
    if keep.sum() < MIN_STYLE_SEGMENTS:
        log.warning(
            "style %s has %d motion-graph segments, fewer than %d: dancing with every style's",
            style,
            int(keep.sum()),
            MIN_STYLE_SEGMENTS,
        )
        return None
    return keep


def allowed_segments(
    arch: dict, lib: dict, only: str | None, style: str | None = None
) -> np.ndarray | None:
    """(S,) bool: segments of the recordings whose id matches the glob ``only`` (a recording's
    mirror image, ``ID~mirror``, counts as ``ID``) and, given ``style``, of that style's
    recordings (:func:`style_segments`); None for every segment."""
    by_style = style_segments(arch, lib, style)
    if only is None:
        return by_style
    names = [name.removesuffix("~mirror") for name in arch["sequences"]]
    keep = np.array([fnmatch.fnmatchcase(name, only) for name in names])
    if not keep.any():
        shown = ", ".join(sorted(set(names))[:8])
        raise ModelError(
            f"--only {only!r} matches none of the model's {len(set(names))} training "
            f"recordings ({shown}{', ...' if len(set(names)) > 8 else ''}); use a glob "
            "such as 'm2d-DANCE_W_*'"
        )
    keep = keep[lib["seg_sequence"]]
    return keep if by_style is None else keep & by_style


def plan(
    net: MotionLibrary,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int,
    only: str | None = None,
    style: str | None = None,
    strict_style: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The song's spans (J, 2) and the library segment chosen for each (J,)."""
    arch, lib = net.arch, net.arrays()
    penalty = arch.get("style_penalty")  # None in checkpoints from before it: a restriction
    if style is not None and not strict_style and penalty is not None:
        # A cost, not a restriction: another style's segment where it fits much better.
        allowed = allowed_segments(arch, lib, only)
        in_style = style_segments(arch, lib, style)
        off_style = None if in_style is None else float(penalty) * ~in_style
    else:
        allowed, off_style = allowed_segments(arch, lib, only, style), None
    typical = int(np.median(lib["seg_length"]))
    beats = beat_frames(audio, list(stats.feature_names))
    per = beats_per_span(beats, int(arch["beats"]), lib["seg_length"], arch["max_warp"])
    spans = song_spans(beats, len(audio), per, typical)
    audio_n = (np.asarray(audio, np.float64) - stats.audio_mean) / stats.audio_std
    columns = audio_n[:, arch["music_columns"]]
    music = pool_spans(relative_music(columns), spans)
    path = choose_segments(
        lib, arch, spans, music, columns.mean(axis=0), first_pose, seed, allowed, off_style
    )
    return spans, path


def generate_motion(
    net: MotionLibrary,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    only: str | None = None,
    style: str | None = None,
    strict_style: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) root-centred and root (T, 3), float32, for raw audio features (T, F);
    ``only``: a glob of the training recordings to dance with, ``style``: a style label
    whose recordings the dance uses (see ``allowed_segments``); with ``strict_style`` False
    (a style inferred from the music, not asked for) other styles' segments cost
    ``style_penalty`` more instead."""
    if len(audio) == 0:
        return np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), np.zeros((0, 3), np.float32)
    first = np.asarray(first_pose, dtype=np.float64).reshape(skeleton.NUM_JOINTS, 3)
    first = first - first[0]
    spans, path = plan(net, stats, audio, first, seed, only, style, strict_style)
    return assemble(net.arrays(), net.arch, stats, spans, path, first)
