"""Style accuracy: does a dance move in its song's style (the sheet's ``style`` column)?

A random-forest classifier (scikit-learn; classes weighted by their inverse frequency so
the majority style is not the default answer) is trained on
the train split's 5-s windows (``WINDOW_S``, one every ``HOP_S``). Each window is
described by the mean and the std of its facing-normalised pose (51 + 51), the mean speed
of each joint (17), and its motion tempo: the autocorrelation of the summed joint speed at
lags ``TEMPO_LAGS_S`` (a waltz's bar of three beats against a cha-cha's of four). Every
dance is first given one body (``CANONICAL_BONES``: each bone keeps its direction, the
pelvis its path), so the classifier reads the dance, not the dancer: trained on dances as
recorded, it had learned the proportions of m2d's one train cha-cha dancer (arms 16-21 %
longer than the waltz dancers'), and that dancer's own dance, re-boned to the library's
lengths as a motion graph does, fell from 100 % to 72 % cha-cha. A row's
style accuracy is the share of its windows classified as the style of the song they are
danced to; windows of a style the train split does not have are not scored.
"""

from __future__ import annotations

import numpy as np

from kakashi.evaluate.windows import facing_normalised, window_starts
from kakashi.kinematics import project_bones_np

WINDOW_S = 5.0
HOP_S = 2.5
TEMPO_LAGS_S = np.arange(0.2, 2.01, 0.1)
# A random forest, not a linear model: the logistic regression of before recognised the
# real dances as well (m2d val 0.97, test 0.99) but read fine posture so closely that motif's
# tokenizer round trip of the real train rumbas (joints 7-8 cm off, pose spread 10-15 %
# smaller) scored 0 % rumba, and of the real val dances 26 %. The forest: real val 0.96, test
# 0.97, the round trip of the val dances 0.85 (studies/style_classifier.py, 2026-12-03).
TREES = 300
LEAF = 3
SEED = 0
# Bone lengths (m) in skeleton.BONES order: the median of the 26 m2d train dances, left and
# right averaged (Dance with Melody's left thigh is 2 cm longer than its right).
CANONICAL_BONES = np.array(
    [0.109, 0.457, 0.313, 0.109, 0.457, 0.313, 0.232, 0.232,
     0.167, 0.083, 0.133, 0.280, 0.238, 0.133, 0.280, 0.238]
)  # fmt: skip


def one_body(world: np.ndarray) -> np.ndarray:
    """The dance (T, 17, 3) danced by a body of ``CANONICAL_BONES``: each bone keeps its
    direction, the pelvis its path."""
    root = world[:, :1]
    return project_bones_np(world - root, CANONICAL_BONES) + root


def window_descriptors(world: np.ndarray, fps: float) -> np.ndarray:
    """The style descriptors (N, 51 + 51 + 17 + lags) of a dance's 5-s windows."""
    world = one_body(np.asarray(world, dtype=np.float64))
    pose = facing_normalised(world).reshape(len(world), -1)
    speed = np.linalg.norm(np.gradient(world, axis=0), axis=-1) * fps  # (T, 17)
    length = max(2, round(WINDOW_S * fps))
    out = []
    for start in window_starts(len(world) / fps, WINDOW_S, HOP_S):
        a = round(start * fps)
        b = min(len(world), a + length)
        total = speed[a:b].sum(axis=1)
        total = total - total.mean()
        energy = float(total @ total) or 1.0
        lags = np.round(TEMPO_LAGS_S * fps).astype(int)
        tempo = [float(total[:-lag] @ total[lag:]) / energy if lag < len(total) else 0.0
                 for lag in lags]  # fmt: skip
        out.append(np.concatenate([pose[a:b].mean(0), pose[a:b].std(0), speed[a:b].mean(0),
                                   tempo]))  # fmt: skip
    return np.stack(out)


def train_classifier(dances: list[tuple[np.ndarray, float, str]]):
    """The classifier of the labelled train dances (world, fps, style); None for < 2 styles."""
    from sklearn.ensemble import RandomForestClassifier

    features, labels = [], []
    for world, fps, style in dances:
        if style:
            windows = window_descriptors(world, fps)
            features.append(windows)
            labels += [style] * len(windows)
    if len(set(labels)) < 2:
        return None
    model = RandomForestClassifier(
        TREES, min_samples_leaf=LEAF, class_weight="balanced", random_state=SEED, n_jobs=1
    )
    return model.fit(np.concatenate(features), np.array(labels))


def style_accuracy(classifier, dances: list[tuple[np.ndarray, float, str | None]]) -> dict:
    """Accuracy of one row against its songs' styles, and its confusion counts."""
    classes = list(classifier.classes_)
    truth, predicted = [], []
    for world, fps, style in dances:
        if style not in classes:
            continue
        guesses = classifier.predict(window_descriptors(world, fps))
        truth += [style] * len(guesses)
        predicted += list(guesses)
    if not truth:
        return {"style_accuracy": None, "style_windows": 0, "style_confusion": None}
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[classes.index(t), classes.index(p)] += 1
    return {
        "style_accuracy": float(np.mean(np.array(truth) == np.array(predicted))),
        "style_windows": len(truth),
        "style_confusion": {"classes": classes, "counts": confusion.tolist()},
    }
