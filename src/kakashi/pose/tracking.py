"""One dancer per video: link person boxes across frames and pick the main dancer.

A detector gives, per frame, any number of person boxes. Kakashi learns one dancer per
sequence, so we link boxes into tracks by greedy IoU matching (a box continues the track
whose last box, seen at most ``max_gap`` frames ago, overlaps it most) and choose as the
main dancer the track with the largest *presence*: the sum over its frames of its box
area as a fraction of the frame. That favours the person who is both large (near the
camera, in the middle of the stage) and persistent (in view for most of the clip); a
passer-by who is large for a second, or a small background person who is always there,
loses to the dancer.

Frames where more people than the main dancer are in view are recorded (the count per
frame), so that the ``pose.max_people`` policy can drop them, keep them or fail the source.
Only people of a meaningful size count: a box smaller than ``min_relative_area`` of the
main dancer's median box is ignored for counting (e.g. far-away audience).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Track:
    """A person followed across frames: the frame numbers and, per frame, the box index."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[int] = field(default_factory=list)
    presence: float = 0.0


@dataclass
class TrackResult:
    """Tracks of a clip, the main dancer and the number of people seen in each frame."""

    tracks: list[Track]
    main: Track | None
    # Per frame: index of the main dancer's box in that frame's detections, or -1.
    main_box: np.ndarray
    # Per frame: people in view (main dancer included) after the size filter.
    people: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) xyxy boxes: an (N, M) matrix."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def track_people(
    boxes_per_frame: list[np.ndarray],
    frame_area: float,
    iou_threshold: float = 0.3,
    max_gap: int = 10,
    min_relative_area: float = 0.25,
) -> TrackResult:
    """Link per-frame xyxy boxes (each (N_t, 4)) into tracks and choose the main dancer."""
    tracks: list[Track] = []
    last_box: dict[int, np.ndarray] = {}
    last_seen: dict[int, int] = {}
    for t, boxes in enumerate(boxes_per_frame):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        live = [k for k in last_box if t - last_seen[k] <= max_gap]
        assigned: set[int] = set()
        used: set[int] = set()
        if live and len(boxes):
            iou = box_iou(boxes, np.stack([last_box[k] for k in live]))
            # Greedy: best pairs first, each box and track used once.
            for flat in np.argsort(-iou, axis=None):
                i, j = np.unravel_index(flat, iou.shape)
                if iou[i, j] < iou_threshold:
                    break
                k = live[j]
                if i in assigned or k in used:
                    continue
                used.add(k)
                tracks[k].frames.append(t)
                tracks[k].boxes.append(int(i))
                assigned.add(int(i))
                last_box[k], last_seen[k] = boxes[i], t
        for i in range(len(boxes)):
            if i not in assigned:
                k = len(tracks)
                tracks.append(Track(track_id=k, frames=[t], boxes=[i]))
                last_box[k], last_seen[k] = boxes[i], t

    areas = [_area(np.asarray(b, dtype=np.float64).reshape(-1, 4)) for b in boxes_per_frame]
    for track in tracks:
        track.presence = float(
            sum(areas[t][i] for t, i in zip(track.frames, track.boxes, strict=True)) / frame_area
        )
    frames = len(boxes_per_frame)
    main = max(tracks, key=lambda tr: tr.presence) if tracks else None
    main_box = np.full(frames, -1, dtype=np.int64)
    people = np.zeros(frames, dtype=np.int64)
    if main is None:
        return TrackResult(tracks, None, main_box, people)
    main_box[main.frames] = main.boxes
    typical = float(np.median([areas[t][i] for t, i in zip(main.frames, main.boxes, strict=True)]))
    for t in range(frames):
        people[t] = int(np.sum(areas[t] >= min_relative_area * typical))
        if main_box[t] >= 0 and areas[t][main_box[t]] < min_relative_area * typical:
            people[t] += 1  # the dancer counts even when crouched into a small box
    return TrackResult(tracks, main, main_box, people)
