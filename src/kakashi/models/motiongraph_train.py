"""Building motiongraph's library (see ``motiongraph``): its "training".

1. Every train-split recording (and its mirror image) is cut at its own music's beats (the
   shard's ``beat`` column) into segments of ``beats`` beats, one starting at every beat,
   so consecutive segments overlap; a segment must have a person in 80 % of its frames.
2. Each segment gets its music: the shard's normalised audio columns (all but ``beat``),
   standardised over the recording (``relative_music``: louder or brighter than the rest of
   its song), averaged over it; each recording its style: the mean of the columns.
3. Edges: the ``neighbours`` segments whose first frame is nearest to the frame after the
   segment, by root-centred pose and ``velocity_s`` times joint velocity (so a 1 m/s
   velocity difference weighs as ``velocity_s`` metres), RMS over joints, in metres. Found
   with scikit-learn's nearest-neighbour search on a PCA of the frame features (a tree or
   brute force, whichever it picks; bench/motiongraph.py measures it up to 5 hours of
   motion). A jump back or forward within a few beats of the same recording is left out
   (it would stutter), and so is the natural successor (generation adds it, free).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from kakashi.errors import ModelError
from kakashi.evaluate.quality import foot_contact, joint_speed
from kakashi.models.config import TrainConfig
from kakashi.models.data import Sequence, load_training_data
from kakashi.models.distributed import Trained
from kakashi.models.motiongraph import BEAT_COLUMN, beat_frames, build, relative_music
from kakashi.models.stats import Stats

log = logging.getLogger("kakashi.models.motiongraph")

MIN_PERSON = 0.8  # share of a segment's frames that must show a person
PCA_DIM = 32  # frame features (102 numbers) are searched in this many principal components

# Settings read at generation (kept in the checkpoint's arch).
ARCH_KEYS = [
    "beats",
    "max_warp",
    "music_weight",
    "style_weight",
    "style_penalty",
    "stillness_weight",
    "tempo_weight",
    "transition_weight",
    "repeat_penalty",
    "repeat_window",
    "blend_s",
    "foot_lock",
    "temperature",
]


def frame_features(pose: np.ndarray, fps: float, velocity_s: float) -> np.ndarray:
    """(T, 102): root-centred pose and ``velocity_s`` x joint velocity (m/s), per frame."""
    velocity = np.gradient(pose, axis=0) * fps if len(pose) > 1 else np.zeros_like(pose)
    flat = np.concatenate([pose, velocity_s * velocity], axis=1)
    return flat.reshape(len(pose), -1)


def build_library(sequences: list[Sequence], stats: Stats, config: TrainConfig) -> dict:
    """The library of ``sequences`` with the settings ``config`` (``resolve("motiongraph",
    ...)``): ``{"arch", "model" (buffers), "summary"}``."""
    s = config
    started = time.perf_counter()
    names = list(stats.feature_names)
    if BEAT_COLUMN not in names:
        raise ModelError(
            "motiongraph cuts motion at the music's beats, but the shards have no 'beat' "
            "feature; add beat to features.feature_set and rebuild the shards"
        )
    music_columns = [i for i, name in enumerate(names) if name != BEAT_COLUMN]
    per = int(s.beats)
    pose_parts, root_parts, contact_parts = [], [], []
    seg = {key: [] for key in ("start", "length", "sequence", "beat", "music", "speed")}
    start_feats, end_feats, nexts = [], [], []
    style: list[np.ndarray] = []  # each kept recording's mean normalised audio features
    offset = 0
    kept_sequences: list[str] = []
    for seq in sequences:
        beats = beat_frames(seq.audio, names)
        if len(beats) <= per:
            log.warning("%s: %d beats, fewer than one segment; left out", seq.name, len(beats))
            continue
        index = len(kept_sequences)
        kept_sequences.append(seq.name)
        pose = seq.pose.astype(np.float64)
        world = pose + seq.root[:, None, :]
        # more than `per` one-hot beat frames: at least 3 frames, enough for both helpers
        contact = foot_contact(world, seq.fps)[0]
        audio_n = (seq.audio - stats.audio_mean) / stats.audio_std
        style.append(audio_n[:, music_columns].mean(axis=0))
        dynamics = relative_music(audio_n[:, music_columns])
        feats = frame_features(pose, seq.fps, s.velocity_s)
        speed = joint_speed(world, seq.fps)
        person = seq.conf > 0
        at_beat: dict[int, int] = {}
        for i in range(len(beats) - per):
            lo, hi = int(beats[i]), int(beats[i + per])
            if hi - lo < 2 or person[lo:hi].mean() < MIN_PERSON:
                continue
            at_beat[i] = len(seg["start"])
            seg["start"].append(offset + lo)
            seg["length"].append(hi - lo)
            seg["sequence"].append(index)
            seg["beat"].append(i)
            seg["music"].append(dynamics[lo:hi].mean(axis=0))
            seg["speed"].append(speed[lo:hi].mean())
            start_feats.append(feats[lo])
            end_feats.append(feats[hi])
        # at_beat keeps insertion (= row) order, so nexts stays aligned with the rows
        nexts += [at_beat.get(i + per, -1) for i in at_beat]
        pose_parts.append(pose.astype(np.float32))
        root_parts.append(seq.root.astype(np.float32))
        contact_parts.append(contact)
        offset += len(pose)
    segments = len(seg["start"])
    if segments < 2:
        raise ModelError(
            f"motiongraph found {segments} beat segment(s) in the train split; it needs music "
            "with a beat under at least a few seconds of dancing"
        )
    edge_to, edge_cost = _neighbours(
        np.asarray(start_feats),
        np.asarray(end_feats),
        np.asarray(seg["sequence"]),
        np.asarray(seg["beat"]),
        np.asarray(nexts),
        int(s.neighbours),
        per,
    )
    style_of = {seq.name: seq.style for seq in sequences}
    arch = {key: getattr(s, key) for key in ARCH_KEYS}
    arch.update(
        frames=offset,
        segments=segments,
        neighbours=edge_to.shape[1],
        music_dim=len(music_columns),
        music_columns=music_columns,
        sequences=kept_sequences,
        # each recording's style label ("" unlabelled): --style restricts to one
        sequence_styles=[style_of[name] for name in kept_sequences],
    )
    net = build(arch)
    state = {
        "pose": torch.from_numpy(np.concatenate(pose_parts)),
        "root": torch.from_numpy(np.concatenate(root_parts)),
        "contact": torch.from_numpy(np.concatenate(contact_parts)),
        "seg_start": torch.tensor(seg["start"], dtype=torch.long),
        "seg_length": torch.tensor(seg["length"], dtype=torch.long),
        "seg_sequence": torch.tensor(seg["sequence"], dtype=torch.long),
        "seg_next": torch.tensor(nexts, dtype=torch.long),
        "seg_beat": torch.tensor(seg["beat"], dtype=torch.long),
        "seg_music": torch.from_numpy(np.asarray(seg["music"], dtype=np.float32)),
        "seg_speed": torch.tensor(seg["speed"], dtype=torch.float32),
        "sequence_style": torch.from_numpy(np.asarray(style, dtype=np.float32)),
        "edge_to": torch.from_numpy(edge_to),
        "edge_cost": torch.from_numpy(edge_cost),
    }
    net.load_state_dict(state)  # checks every shape against build(arch)
    finite = edge_cost[edge_to >= 0]
    summary = {
        "sequences": float(len(kept_sequences)),
        "minutes": offset / stats.fps / 60.0,
        "segments": float(segments),
        "median_segment_s": float(np.median(seg["length"]) / stats.fps),
        "edge_cost_median_m": float(np.median(finite)) if len(finite) else float("nan"),
        "seconds": time.perf_counter() - started,
    }
    log.info("motion graph %s", {k: round(v, 3) for k, v in summary.items()})
    return {"arch": arch, "model": net.state_dict(), "summary": summary}


def _neighbours(
    start: np.ndarray,
    end: np.ndarray,
    sequence: np.ndarray,
    beat: np.ndarray,
    natural: np.ndarray,
    width: int,
    per: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(S, width) nearest segment starts to each segment's end, and their costs (metres)."""
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    segments = len(start)
    joints = start.shape[1] // 6  # position and velocity of each joint
    dims = min(PCA_DIM, segments, start.shape[1])
    pca = PCA(n_components=dims, random_state=0).fit(start)
    # A jump within this many beats of the same recording would stutter.
    near = 2 * per + 1
    ask = min(segments, width + 2 * near + 2)
    index = NearestNeighbors(n_neighbors=ask).fit(pca.transform(start))
    _, found = index.kneighbors(pca.transform(end))
    edge_to = np.full((segments, width), -1, dtype=np.int64)
    edge_cost = np.zeros((segments, width), dtype=np.float32)
    for a in range(segments):
        cands = found[a]
        same = (sequence[cands] == sequence[a]) & (np.abs(beat[cands] - beat[a]) <= near)
        cands = cands[~same & (cands != natural[a])][:width]
        edge_to[a, : len(cands)] = cands
        # exact distance in the full feature space, RMS over joints
        diff = start[cands] - end[a]
        edge_cost[a, : len(cands)] = np.sqrt((diff**2).sum(axis=1) / joints)
    return edge_to, edge_cost


# ---------------------------------------------------------------- the workflow's entry


def run(
    config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device
) -> Trained:
    """Build the library as ``kakashi train --model motiongraph`` asks; its history is one
    row (the library's summary)."""
    if world > 1:
        raise ModelError("motiongraph builds in one process; set train.devices: 1")
    train, _, stats = load_training_data(config.shards, config.mirror)
    result = build_library(train, stats, config)
    arch = {**result["arch"], "kind": "motiongraph"}
    return Trained(arch, stats, result["model"], [result["summary"]])
