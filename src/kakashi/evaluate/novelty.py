"""Novelty against the training set: copy share, longest replay and the data-copying C_T.

Every dance is cut into 1-s windows (``WINDOW_S``, one every ``QUERY_HOP_S``), each
described by ``SAMPLES`` frames of :func:`kakashi.evaluate.windows.frame_features`
(facing-normalised pose plus body-frame velocity) spread over it. The train split is cut
the same way every ``BANK_HOP_S``, and at every speed of ``SPEEDS`` too: a bank window at
speed 1.2 covers 1.2 s of a train dance squeezed into 1 s (velocities x 1.2), so a copy
played faster or slower, or with a slowly varying tempo (a time warp), still finds its
source. The search runs in a PCA space of ``PCA_DIMS`` dimensions fitted on the train
windows; each of the ``CANDIDATES`` nearest bank windows is then refined in the full
descriptor space, shifting its start by ``REFINE_SHIFTS_S`` and its speed by
``REFINE_SPEEDS`` (a copy rarely starts on the bank's 0.1-s grid or plays at one of its
speeds), and a window's distance is the least found, divided by how much the window
itself moves (the Euclidean norm of its poses about their mean plus its velocities, at
least ``MOTION_FLOOR_M``). Without that division the threshold below would be set by the
still windows (a dancer standing before the music starts is near every other still train
window) and a copy of a moving bar shifted by a quarter of a frame would not count: on
the m2d test split the plain distance's 5th percentile was 0.037 m while a train dance
replayed one frame late had a median distance of 0.11 m.

- **copy share**: the share of a row's windows nearer to the train set than the
  ``COPY_PERCENTILE`` th percentile of the real test windows' distances (ground truth is at
  that share by construction).
- **longest replay** (s): the longest chain of consecutive windows of one dance, each
  nearer than ``CHAIN_THRESHOLD`` x the copy threshold, whose nearest bank windows continue
  one train sequence (each next one starts ``CHAIN_ADVANCE`` x the hop later in the train
  dance, at any speed).
- **C_T** (Meehan, Chaudhuri, Dasgupta, AISTATS 2020, and their reference code
  ``casey-meehan/data-copying``): the train windows are partitioned into ``CT_CELLS``
  k-means cells; in each cell a Mann-Whitney U test compares the row's distances to the
  cell's train windows with the real test windows' ones, Z-scored under the null
  (``(U - mn/2 - 0.5) / sqrt(mn(n+m+1)/12)``); C_T is the average of the cells' Z weighted
  by the test windows' share in each cell, over the cells holding more than
  ``CT_MIN_WINDOWS`` of the row's windows (their ``tau = 20 / m``). Below 0: nearer the
  train set than real new dancing is (copying); above 0: farther (underfitting). Cells
  without test windows (where the reference code raises) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kakashi.evaluate.windows import window_features, window_starts

WINDOW_S = 1.0
SAMPLES = 10
QUERY_HOP_S = 0.5
# Speed-1 bank windows start at every frame (a replay at a whole-frame offset is found
# exactly); the other speeds every BANK_HOP_S, for tempo changes of up to 25 % either way.
BANK_HOP_S = 0.1
SPEEDS = (0.8, 0.89, 1.0, 1.12, 1.25)
PCA_DIMS = 32
PCA_FIT_WINDOWS = 4000
CANDIDATES = 3
# Two refinement rounds, each around the best so far: (start shifts s, speed factors).
REFINE = (
    ((-0.04, -0.02, 0.0, 0.02, 0.04), (0.97, 1.0, 1.03)),
    ((-0.01, -0.005, 0.0, 0.005, 0.01), (0.99, 1.0, 1.01)),
)
MOTION_FLOOR_M = 0.05
COPY_PERCENTILE = 5.0
CHAIN_ADVANCE = (0.5, 2.0)
CHAIN_THRESHOLD = 2.0
CT_CELLS = 5
CT_MIN_WINDOWS = 20
SEED = 0


def _descriptors(world, fps, starts, speed, bounds=None) -> np.ndarray:
    return window_features(world, fps, starts, speed, SAMPLES, WINDOW_S, bounds).astype(np.float32)


@dataclass
class TrainBank:
    """The train windows at every speed, projected; and where each comes from."""

    world: np.ndarray  # every train dance, end to end (frames, 17, 3)
    fps: float
    first: np.ndarray  # (dances,) first frame of each dance in ``world``
    last: np.ndarray  # (dances,) last frame
    pca: object
    points: np.ndarray  # (N, PCA_DIMS)
    sequence: np.ndarray  # (N,) index of the train dance
    start_s: np.ndarray  # (N,) start in the train dance
    speed: np.ndarray  # (N,)
    search: object  # nearest-neighbour index over points
    cells: object  # k-means over the speed-1 windows (C_T)
    cell_of: np.ndarray  # (N,)

    def descriptors(self, sequence, start_s, speed) -> np.ndarray:
        offset = self.first[sequence] / self.fps
        bounds = (self.first[sequence], self.last[sequence])
        return _descriptors(self.world, self.fps, offset + start_s, speed, bounds)


def build_bank(train: list[tuple[np.ndarray, float]]) -> TrainBank:
    """The bank of train windows (``train``: world positions and fps per dance, one fps)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    fps = float(train[0][1])
    lengths = np.array([len(world) for world, _ in train])
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    world = np.concatenate([np.asarray(w, dtype=np.float64) for w, _ in train])
    sequence, starts, speeds = [], [], []
    for index, length in enumerate(lengths):
        for speed in SPEEDS:
            span = WINDOW_S * speed
            if span > (length - 1) / fps and speed != 1.0:
                continue
            hop = 1.0 / fps if speed == 1.0 else BANK_HOP_S
            start = window_starts((length - 1) / fps, span, hop)
            sequence.append(np.full(len(start), index))
            starts.append(start)
            speeds.append(np.full(len(start), speed))
    sequence, starts, speeds = map(np.concatenate, (sequence, starts, speeds))
    bank = TrainBank(world, fps, first, first + lengths - 1, None, None, sequence, starts,
                     speeds, None, None, None)  # fmt: skip
    base = np.flatnonzero(speeds == 1.0)
    raw_base = bank.descriptors(sequence[base], starts[base], 1.0)
    # Fitted on a sample of the speed-1 windows: neighbours a frame apart are near copies.
    fit = np.random.default_rng(SEED).permutation(len(raw_base))[:PCA_FIT_WINDOWS]
    dims = min(PCA_DIMS, len(fit), raw_base.shape[1])
    bank.pca = PCA(n_components=dims, svd_solver="covariance_eigh")
    bank.pca.fit(raw_base[fit])
    points = np.empty((len(sequence), bank.pca.n_components_), np.float32)
    for chunk in np.array_split(np.arange(len(sequence)), max(1, len(sequence) // 8192)):
        raw = bank.descriptors(sequence[chunk], starts[chunk], speeds[chunk])
        points[chunk] = bank.pca.transform(raw)
    bank.points = points
    bank.search = NearestNeighbors(n_neighbors=CANDIDATES, algorithm="brute").fit(points)
    bank.cells = KMeans(n_clusters=min(CT_CELLS, len(fit)), n_init=1, random_state=SEED)
    bank.cells.fit(points[base][fit])  # the PCA's sample: k-means of 50,000 took ~3 s
    bank.cell_of = bank.cells.predict(points)
    return bank


@dataclass
class Queries:
    points: np.ndarray  # (N, PCA_DIMS)
    dance: np.ndarray  # (N,) index of the dance in the row
    distance: np.ndarray  # (N,) to the nearest train window, refined
    sequence: np.ndarray  # (N,) train dance of that window
    start_s: np.ndarray  # (N,) its start in that dance


def query(bank: TrainBank, dances: list[tuple[np.ndarray, float]]) -> Queries:
    """Every 1-s window of a row's dances, matched to its nearest train window."""
    blocks, owner = [], []
    for index, (world, fps) in enumerate(dances):
        starts = window_starts((len(world) - 1) / fps, WINDOW_S, QUERY_HOP_S)
        blocks.append(_descriptors(np.asarray(world, dtype=np.float64), fps, starts, 1.0))
        owner.append(np.full(len(starts), index))
    raw = np.concatenate(blocks)
    points = bank.pca.transform(raw).astype(np.float32)
    _, candidates = bank.search.kneighbors(points)  # (N, CANDIDATES)
    norm = motion_norm(raw)
    sequence = bank.sequence[candidates.reshape(-1)]
    start = bank.start_s[candidates.reshape(-1)]
    speed = bank.speed[candidates.reshape(-1)]
    owner_of = np.repeat(np.arange(len(raw)), candidates.shape[1])
    for shifts, factors in REFINE:
        sequence, start, speed, distance = _refine(
            bank, raw, norm, owner_of, sequence, start, speed, shifts, factors
        )
        owner_of = np.arange(len(raw))
    return Queries(points, np.concatenate(owner), distance, sequence, start)


def _refine(bank, raw, norm, owner_of, sequence, start, speed, shifts, factors):
    """Try every (shift, speed factor) around each candidate; keep each query's best."""
    grid_shift, grid_factor = (g.reshape(-1) for g in np.meshgrid(shifts, factors))
    tries = len(grid_shift)
    seq = np.repeat(sequence, tries)
    new_start = np.repeat(start, tries) + np.tile(grid_shift, len(start))
    new_speed = np.repeat(speed, tries) * np.tile(grid_factor, len(start))
    query_of = np.repeat(owner_of, tries)
    distance = np.empty(len(seq), np.float32)
    for chunk in np.array_split(np.arange(len(seq)), max(1, len(seq) // 8192)):
        found = bank.descriptors(seq[chunk], new_start[chunk], new_speed[chunk])
        distance[chunk] = np.linalg.norm(found - raw[query_of[chunk]], axis=1)
    distance = distance.reshape(len(raw), -1) / norm[:, None]
    best = np.arange(len(raw)) * distance.shape[1] + distance.argmin(axis=1)
    return seq[best], new_start[best], new_speed[best], distance.reshape(-1)[best]


def motion_norm(raw: np.ndarray) -> np.ndarray:
    """How much each window moves: the norm of its poses about their mean and of its
    velocities (metres), at least ``MOTION_FLOOR_M``."""
    values = raw.reshape(len(raw), SAMPLES, 2, -1)
    pose, velocity = values[:, :, 0], values[:, :, 1]
    spread = pose - pose.mean(axis=1, keepdims=True)
    norm = np.sqrt((spread**2).sum(axis=(1, 2)) + (velocity**2).sum(axis=(1, 2)))
    return np.maximum(norm, MOTION_FLOOR_M)


def longest_replay_s(rows: Queries, threshold: float) -> float:
    """The longest chain of windows that continues one train sequence, in seconds.

    A chain is a run of consecutive windows of one dance, each nearer than
    ``CHAIN_THRESHOLD`` x the copy threshold and each matched in the same train dance
    ``CHAIN_ADVANCE`` x the hop after the previous one. The looser distance lets a chain
    run through the odd window that a time warp pushes just over the copy threshold (a
    copy with a tempo changing every 2 s had 70 % copy windows but chains of 2.5 s).
    """
    low, high = (factor * QUERY_HOP_S for factor in CHAIN_ADVANCE)
    near = rows.distance < CHAIN_THRESHOLD * threshold
    best = run = 0
    for i in range(len(rows.distance)):
        if not near[i]:
            run = 0
            continue
        if run and rows.dance[i] == rows.dance[i - 1]:
            advance = rows.start_s[i] - rows.start_s[i - 1]
            same = rows.sequence[i] == rows.sequence[i - 1] and low <= advance <= high
            run = run + 1 if same else 1
        else:
            run = 1
        best = max(best, run)
    return 0.0 if best == 0 else (best - 1) * QUERY_HOP_S + WINDOW_S


def z_u(generated: np.ndarray, test: np.ndarray) -> float:
    """The Z-scored Mann-Whitney U of generated vs test distances (reference code ``Zu``)."""
    from scipy.stats import mannwhitneyu

    m, n = len(generated), len(test)
    u = mannwhitneyu(generated, test, alternative="less").statistic
    return float((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12))


def c_t(bank: TrainBank, test: Queries, rows: Queries) -> float | None:
    """The C_T statistic of a row (None when no cell holds enough of its windows).

    As the reference code, a window's distance here is to the nearest train window of its
    own cell (in the PCA space, the cells' space).
    """
    from sklearn.neighbors import NearestNeighbors

    test_cells = bank.cells.predict(test.points)
    row_cells = bank.cells.predict(rows.points)
    weights, scores = [], []
    for cell in range(bank.cells.n_clusters):
        train_points = bank.points[bank.cell_of == cell]
        in_test, in_row = test_cells == cell, row_cells == cell
        if not in_test.any() or len(train_points) == 0 or in_row.sum() <= CT_MIN_WINDOWS:
            continue
        search = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(train_points)
        test_d = search.kneighbors(test.points[in_test], n_neighbors=1)[0][:, 0]
        row_d = search.kneighbors(rows.points[in_row], n_neighbors=1)[0][:, 0]
        weights.append(in_test.mean())
        scores.append(z_u(row_d, test_d))
    if not weights:
        return None
    return float(np.dot(weights, scores) / np.sum(weights))


def copy_threshold(test: Queries) -> float:
    return float(np.percentile(test.distance, COPY_PERCENTILE))


def novelty(bank: TrainBank, test: Queries, rows: Queries) -> dict:
    """The novelty columns of one row, against the real test windows ``test``."""
    threshold = copy_threshold(test)
    return {
        "copy_share": float((rows.distance < threshold).mean()),
        "longest_replay_s": longest_replay_s(rows, threshold),
        "c_t": c_t(bank, test, rows),
        "nn_distance": float(np.median(rows.distance)),
    }
