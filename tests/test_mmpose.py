"""The MMPose backend, its tracker and the ``pose.max_people`` policy.

No pretrained weights can be downloaded here, so the end-to-end tests use **random
weights**: each test session builds the default detector, 2-D pose and lifter models from
the same configs a user gets, saves their randomly initialised ``state_dict`` as ordinary
``{'state_dict': ..., 'meta': ...}`` checkpoints, and the backend loads them through the
same path a user's downloaded checkpoints take. The network cost is the real one; the
poses are meaningless, so these tests check shapes, joint order, axes, bookkeeping and
policy, never accuracy.

Tracking and policy tests run without MMPose; the rest skip with the reason when mmpose,
mmdet or mmcv's compiled ops are missing (scripts/setup-mmpose.sh installs them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_VIDEO, REPO, shared_file
from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import PoseError
from kakashi.pose import apply_people_policy, fill_missing
from kakashi.pose.tracking import box_iou, track_people

try:
    import mmcv.ops  # noqa: F401  (compiled ops: RTMDet's NMS needs them)
    import mmdet  # noqa: F401
    import mmpose  # noqa: F401

    MMPOSE_MISSING = ""
except ImportError as error:
    MMPOSE_MISSING = f"mmpose stack not importable ({error}); run scripts/setup-mmpose.sh"

needs_mmpose = pytest.mark.skipif(bool(MMPOSE_MISSING), reason=MMPOSE_MISSING)


# -- tracking and the multi-person policy (no MMPose needed) ------------------------------


def _box(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y + h]


def test_main_dancer_is_largest_and_most_persistent() -> None:
    frames = []
    for t in range(30):
        boxes = [_box(100 + t, 50, 120, 300)]  # the dancer, drifting right, always there
        boxes.append(_box(500, 300, 30, 60))  # a small person at the back, always there
        if 10 <= t < 13:
            boxes.append(_box(0, 0, 400, 480))  # a passer-by filling the frame for 3 frames
        frames.append(np.array(boxes[::-1] if t % 2 else boxes))  # detector order varies
    result = track_people(frames, frame_area=640 * 480)
    assert result.main is not None
    assert result.main.frames == list(range(30))  # one unbroken track
    for t, i in enumerate(result.main_box):
        assert frames[t][i][1] == 50  # it is the dancer's box in every frame
    # The small person never counts; the passer-by does, for exactly its 3 frames.
    np.testing.assert_array_equal(np.flatnonzero(result.people > 1), [10, 11, 12])
    assert len(result.tracks) == 3


def test_tracker_bridges_short_gaps_and_starts_new_tracks_after_long_ones() -> None:
    dancer = np.array([_box(100, 50, 120, 300)])
    empty = np.zeros((0, 4))
    frames = [dancer] * 5 + [empty] * 3 + [dancer] * 5 + [empty] * 20 + [dancer] * 2
    result = track_people(frames, frame_area=640 * 480, max_gap=10)
    assert result.main.frames == [*range(5), *range(8, 13)]
    assert len(result.tracks) == 2
    assert (result.main_box >= 0).sum() == 10
    np.testing.assert_array_equal(result.people[5:8], 0)
    np.testing.assert_allclose(box_iou(dancer, dancer), [[1.0]])


def _sequence(people: list[int] | None) -> Dance:
    frames = 6
    rng = np.random.default_rng(1)
    meta = {} if people is None else {"people_per_frame": people}
    return Dance(
        pose=rng.normal(size=(frames, 17, 3)).astype(np.float32),
        root=np.zeros((frames, 3), np.float32),
        conf=np.full(frames, 0.9, np.float32),
        fps=25.0,
        meta=meta,
    )


def test_people_policy_keep_drop_fail() -> None:
    people = [1, 2, 1, 1, 3, 1]
    kept = apply_people_policy(_sequence(people), "clip", 1, "keep")
    np.testing.assert_allclose(kept.conf, 0.9)
    assert kept.meta["max_people"] == {
        "max_people": 1,
        "policy": "keep",
        "applied": True,
        "frames_over": 2,
    }
    dropped = apply_people_policy(_sequence(people), "clip", 1, "drop")
    np.testing.assert_array_equal(np.flatnonzero(dropped.conf == 0), [1, 4])
    filled = fill_missing(dropped, "clip", 0.5)
    assert filled.meta["frames_without_person"] == 2  # dropped frames are counted
    assert (
        apply_people_policy(_sequence(people), "clip", 3, "fail").meta["max_people"]["frames_over"]
        == 0
    )
    with pytest.raises(PoseError, match=r"clip: 2 of 6 frames show more than 1 people.*1, 4"):
        apply_people_policy(_sequence(people), "clip", 1, "fail")
    with pytest.raises(PoseError, match="pose.multi_person"):
        apply_people_policy(_sequence(people), "clip", 1, "ignore")


def test_people_policy_not_applied_when_backend_cannot_count() -> None:
    """MediaPipe tracks one person and cannot count others: say so, change nothing."""
    sequence = apply_people_policy(_sequence(None), "clip", 1, "fail")
    assert sequence.meta["max_people"]["applied"] is False
    np.testing.assert_allclose(sequence.conf, 0.9)


# -- the backend with random weights ------------------------------------------------------


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """RANDOM weights for the default configs, saved as ordinary MMEngine checkpoints."""
    import torch
    from mmdet.apis import init_detector

    from kakashi.pose import mmpose_backend as mb

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random_checkpoints")
    paths = {}
    det = init_detector(str(mb.resolve_config(mb.DEFAULT_DET_CONFIG, "det")), None, device="cpu")
    for key, model, meta in (
        ("det", det, {"dataset_meta": {"classes": ("person",)}}),
        ("pose2d", mb.init_pose_model(mb.resolve_config(mb.DEFAULT_POSE2D_CONFIG, "p")), {}),
        ("lifter", mb.init_pose_model(mb.resolve_config(mb.DEFAULT_LIFTER_CONFIG, "l")), {}),
    ):
        paths[key] = folder / f"{key}_random.pth"
        torch.save({"state_dict": model.state_dict(), "meta": meta}, paths[key])
    return paths


@pytest.fixture(scope="session")
def backend(random_checkpoints):
    from kakashi.pose.mmpose_backend import MMPoseBackend

    return MMPoseBackend(
        det_checkpoint=str(random_checkpoints["det"]),
        pose2d_checkpoint=str(random_checkpoints["pose2d"]),
        lifter_checkpoint=str(random_checkpoints["lifter"]),
        device="cpu",
        batch_size=4,
        # Random detectors score every box low: keep them all, else no person is found.
        bbox_threshold=0.0,
        workers=2,
    )


def _head_of_video(source: Path, target: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``source`` as an mp4 (keeps the test short)."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok, f"{source} has fewer than {frames} frames"
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        writer.write(frame)
    writer.release()
    capture.release()
    return target


@pytest.fixture(scope="session")
def dancer_clip(tmp_path_factory) -> Path:
    """16 frames (0.64 s) of the demo dancer: on 2 busy CPU cores a frame can take seconds."""
    return _head_of_video(DEMO_VIDEO, tmp_path_factory.mktemp("clips") / "dancer.mp4", 16)


@needs_mmpose
def test_missing_checkpoint_fails_before_any_video(tmp_path, random_checkpoints) -> None:
    from kakashi.pose.mmpose_backend import MMPoseBackend

    missing = tmp_path / "models" / "rtmpose-m.pth"
    with pytest.raises(PoseError, match=r"pose2d_checkpoint: checkpoint .*rtmpose-m.pth does not"):
        MMPoseBackend(
            det_checkpoint=str(random_checkpoints["det"]),
            pose2d_checkpoint=str(missing),
            lifter_checkpoint=str(random_checkpoints["lifter"]),
            device="cpu",
        )
    # The message names the official weights to fetch on a connected machine.
    with pytest.raises(PoseError, match=r"download https://download.openmmlab.com/\S+\.pth"):
        MMPoseBackend(det_checkpoint=str(missing), device="cpu")


@needs_mmpose
def test_checkpoint_of_another_config_is_refused(random_checkpoints) -> None:
    from kakashi.pose.mmpose_backend import MMPoseBackend

    with pytest.raises(PoseError, match=r"lifter_checkpoint: .* does not fit its config"):
        MMPoseBackend(
            det_checkpoint=str(random_checkpoints["det"]),
            pose2d_checkpoint=str(random_checkpoints["pose2d"]),
            lifter_checkpoint=str(random_checkpoints["pose2d"]),
            device="cpu",
        )


@needs_mmpose
def test_config_names_resolve_to_shipped_files() -> None:
    from kakashi.pose import mmpose_backend as mb

    for name in (mb.DEFAULT_DET_CONFIG, mb.DEFAULT_POSE2D_CONFIG, mb.DEFAULT_LIFTER_CONFIG):
        path = mb.resolve_config(name, "setting")
        assert path.is_file() and ".mim" in path.parts
    # A model-zoo name resolves to its config and its official weights.
    assert mb.resolve_config("rtmpose-m_8xb256-420e_coco-256x192", "x").name.startswith("rtmpose-m")
    with pytest.raises(PoseError, match="pose.mmpose.lifter_config: 'no-such-model.py'"):
        mb.resolve_config("no-such-model.py", "pose.mmpose.lifter_config")


@needs_mmpose
def test_keypoint_mapping_matches_mmpose() -> None:
    import importlib.util

    import mmpose

    from kakashi.pose.keypoints import coco_to_h36m

    # Load MMPose's own mapping from its file: importing mmpose.apis needs torchvision.
    path = Path(mmpose.__file__).parent / "apis" / "inference_3d.py"
    spec = importlib.util.spec_from_file_location("mmpose_inference_3d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    convert_keypoint_definition = module.convert_keypoint_definition

    points = np.random.default_rng(0).uniform(0, 500, size=(5, 17, 3)).astype(np.float32)
    np.testing.assert_allclose(
        coco_to_h36m(points), convert_keypoint_definition(points, "coco", "h36m"), rtol=1e-6
    )


@needs_mmpose
def test_demo_dancer_end_to_end(backend, dancer_clip) -> None:
    """RANDOM weights: checks the plumbing (shapes, order, axes, meta), not accuracy."""
    sequence = backend.estimate(dancer_clip)
    assert len(sequence) == 16 and sequence.fps == pytest.approx(25.0)
    assert sequence.pose.shape == (16, skeleton.NUM_JOINTS, 3)
    assert np.isfinite(sequence.pose).all()
    np.testing.assert_array_equal(sequence.pose[:, skeleton.INDEX["pelvis"]], 0.0)
    np.testing.assert_array_equal(sequence.root, 0.0)
    assert ((sequence.conf >= 0) & (sequence.conf <= 1)).all()
    # conf > 0 exactly where the main dancer's track has a box (random boxes may skip some).
    assert (sequence.conf > 0).sum() == sequence.meta["main_track_frames"] > 0
    assert sequence.meta["backend"] == "mmpose" and sequence.meta["root_measured"] is False
    assert len(sequence.meta["people_per_frame"]) == 16
    assert sequence.meta["model"]["lifter"].startswith("video-pose-lift_tcn-243frm")
    # Not all joints collapsed onto the root: the lifter really produced a skeleton.
    assert skeleton.bone_lengths(sequence.pose).min() > 0


@needs_mmpose
def test_two_person_clip_policy_through_the_cli(random_checkpoints, tmp_path) -> None:
    """RANDOM weights on the two-person clip: the CLI counts people and applies the policy."""
    # The first 16 of its 40 frames (1.3 s at 12 fps), for time.
    video = _head_of_video(
        shared_file("video_mmhuman3d/multi_person_demo.mp4"), tmp_path / "two.mp4", 16
    )

    def run(policy: str, max_people: int) -> subprocess.CompletedProcess:
        output = tmp_path / f"{policy}-{max_people}.npz"
        command = [sys.executable, "-m", "kakashi", "pose", str(video), "-o", str(output)]
        command += ["--backend", "mmpose", "--multi-person", policy]
        command += ["--max-people", str(max_people), "--min-person-fraction", "0"]
        for key, path in random_checkpoints.items():
            command += [f"--mmpose-{key}-checkpoint", str(path)]
        command += ["--mmpose-device", "cpu", "--mmpose-bbox-threshold", "0"]
        command += ["--mmpose-batch-size", "4"]
        return subprocess.run(command, capture_output=True, text=True, cwd=REPO)

    keep = run("keep", 1)
    assert keep.returncode == 0, keep.stderr
    kept = Dance.load(tmp_path / "keep-1.npz")
    people = np.array(kept.meta["people_per_frame"])
    assert len(people) == len(kept) == 16
    crowded = people > 1
    assert crowded.any(), "random detector boxes: expected several people counted somewhere"
    # The CLI estimates the root (pose.root: estimate) from the keypoints and the lifted pose.
    assert kept.meta["root_measured"] is True and kept.meta["root_source"] == "video"
    assert kept.meta["root"]["image_size"] == [1080, 1920] and np.isfinite(kept.root).all()
    assert kept.meta["max_people"] == {
        "max_people": 1,
        "policy": "keep",
        "applied": True,
        "frames_over": int(crowded.sum()),
    }

    failed = run("fail", 1)
    assert failed.returncode == 1
    assert f"{crowded.sum()} of 16 frames show more than 1 people" in failed.stderr

    # drop, in process on the same estimate: with a limit that splits the clip when the
    # counts vary, else everything is dropped and the source fails for lack of a person.
    limit = int(people.min()) if people.min() < people.max() else 1
    over = people > limit
    found = kept.conf > 0
    dropped = apply_people_policy(kept, "two-person", limit, "drop")
    np.testing.assert_array_equal(dropped.conf == 0, over | ~found)
    if (over | ~found).all():
        with pytest.raises(PoseError, match="no person found in 16 of 16 frames"):
            fill_missing(dropped, "two-person", 0.0)
    else:
        filled = fill_missing(dropped, "two-person", 0.0)
        assert filled.meta["frames_without_person"] == int((over | ~found).sum())
