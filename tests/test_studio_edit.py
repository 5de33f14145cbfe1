"""The studio's style picker and its edits ("another take of these bars"), through the JSON
API and in headless Chromium, on a real uvicorn with a real motion graph trained on tiny
shards with two labelled styles (tests/test_styles.py) and one trained on the demo's."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import headless_chromium
from kakashi.cli import main
from kakashi.dance import Dance
from test_studio import Studio, clip, serve
from test_styles import graph, styled  # noqa: F401 (fixtures: labelled shards, their model)
from test_viewer import wait_for


@pytest.fixture(scope="module")
def models(graph: Path, demo_shards: Path, tmp_path_factory) -> Path:  # noqa: F811
    """styled.pt knows cha-cha and waltz; plain.pt (the demo's) knows no style."""
    folder = tmp_path_factory.mktemp("edit_studio_models")
    shutil.copy(graph, folder / "styled.pt")
    command = ["train", "--model", "motiongraph", "--shards", str(demo_shards)]
    assert main([*command, "--out", str(folder / "plain.pt"), "--no-progress"]) == 0
    return folder


@pytest.fixture(scope="module")
def studio(models: Path, tmp_path_factory):
    with serve(models, tmp_path_factory.mktemp("edit_studio_work")) as running:
        yield running


def dance_of(studio: Studio, dance_id: str) -> Dance:
    answer = requests.get(f"{studio.url}/api/dances/{dance_id}/dance.npz", timeout=30)
    assert answer.status_code == 200
    path = studio.work_dir / f"download-{dance_id}.npz"
    path.write_bytes(answer.content)
    return Dance.load(path)


def edit(studio: Studio, **fields) -> requests.Response:
    # multipart like the page's FormData, without a song
    files = {name: (None, str(value)) for name, value in fields.items()}
    return requests.post(f"{studio.url}/api/dances", files=files, timeout=60)


@pytest.fixture(scope="module")
def first(studio: Studio, styled) -> dict:  # noqa: F811
    """A finished dance of the cha-cha test song by the styled model."""
    answer = studio.post(styled["songs"]["c3"], "c3.wav", model="styled", seed="1")
    assert answer.status_code == 202, answer.text
    status = studio.wait(answer.json()["id"])
    assert status["status"] == "done", status
    return status


def test_another_take_of_these_bars_keeps_the_rest(studio: Studio, first: dict) -> None:
    answer = edit(studio, edit_of=first["id"], from_s="4", to_s="8.5", seed="5")
    assert answer.status_code == 202, answer.text
    status = studio.wait(answer.json()["id"])
    assert status["status"] == "done", status
    assert status["request"]["edit_of"] == first["id"]
    assert (status["request"]["from_s"], status["request"]["to_s"]) == (4.0, 8.5)
    assert status["request"]["song"] == first["request"]["song"]  # the same song
    assert status["result"]["edit"]["kind"] == "inbetween"
    assert status["result"]["style"] == first["result"]["style"] == "cha-cha"
    before, after = dance_of(studio, first["id"]), dance_of(studio, status["id"])
    assert len(before) == len(after)
    assert np.array_equal(after.pose[:120], before.pose[:120])
    assert np.array_equal(after.pose[255:], before.pose[255:])
    assert np.array_equal(after.root[255:], before.root[255:])
    assert not np.array_equal(after.pose[120:255], before.pose[120:255])
    # The same edit again is the same job; it is listed as a take.
    assert (
        edit(studio, edit_of=first["id"], from_s="4", to_s="8.5", seed="5").json()["id"]
        == (status["id"])
    )
    listed = [job["id"] for job in requests.get(f"{studio.url}/api/dances", timeout=10).json()[
        "dances"]]  # fmt: skip
    assert status["id"] in listed

    upper = edit(studio, edit_of=first["id"], keep="upper", seed="2")
    status = studio.wait(upper.json()["id"])
    assert status["status"] == "done", status
    kept = dance_of(studio, status["id"])
    assert np.array_equal(kept.pose[:, 7:], before.pose[:, 7:])
    assert status["result"]["edit"]["keep"] == "upper"


def test_a_take_continued_to_a_longer_song_starts_as_the_take_bit_for_bit(
    studio: Studio, first: dict, tmp_path: Path
) -> None:
    """Continue this dance: to an uploaded song, then to that song by its stored name."""
    longer = clip(tmp_path, 30.0)  # c3 lasts 24 s
    files = {"edit_of": (None, first["id"]), "seed": (None, "3"),
             "song": ("longer.wav", io.BytesIO(longer.read_bytes()), "audio/wav")}  # fmt: skip
    answer = requests.post(f"{studio.url}/api/dances", files=files, timeout=60)
    assert answer.status_code == 202, answer.text
    status = studio.wait(answer.json()["id"])
    assert status["status"] == "done", status
    request = status["request"]
    assert (request["edit_of"], request["continues"], request["song_name"]) == (
        first["id"], True, "longer.wav")  # fmt: skip
    assert request["song"] != first["request"]["song"]
    assert request["model"] == first["request"]["model"] and request["seed"] == 3
    assert status["result"]["edit"]["kind"] == "continuation"
    assert status["result"]["duration_s"] == pytest.approx(30.0, abs=0.05)
    before, after = dance_of(studio, first["id"]), dance_of(studio, status["id"])
    kept = len(before)
    assert len(after) == status["result"]["frames"] > kept + 100
    assert np.array_equal(after.pose[:kept], before.pose[:kept])
    assert np.array_equal(after.root[:kept], before.root[:kept])
    assert after.meta["edit"]["kept_s"] == pytest.approx(kept / before.fps, abs=1e-3)
    listed = [job["id"] for job in requests.get(f"{studio.url}/api/dances", timeout=10).json()[
        "dances"]]  # fmt: skip
    assert status["id"] in listed
    # The same song, now one of the studio's, by its stored name: another seed, another take.
    again = edit(studio, edit_of=first["id"], song=request["song"], seed="4")
    assert again.status_code == 202, again.text
    other = studio.wait(again.json()["id"])
    assert other["status"] == "done", other
    assert other["id"] != status["id"] and other["request"]["song_name"] == "longer.wav"
    second = dance_of(studio, other["id"])
    assert np.array_equal(second.pose[:kept], before.pose[:kept])
    assert np.array_equal(second.root[:kept], before.root[:kept])
    assert len(second) == len(after)
    # The upload again is the same job.
    files["song"] = ("longer.wav", io.BytesIO(longer.read_bytes()), "audio/wav")
    answer = requests.post(f"{studio.url}/api/dances", files=files, timeout=60)
    assert answer.json()["id"] == status["id"]


def test_a_take_through_pinned_poses_reaches_them(studio: Studio, first: dict) -> None:
    """New take through these poses: the edited take's poses at 2 s and 6.5 s, at the
    same times of a new take of the same song."""
    answer = edit(studio, edit_of=first["id"], keyframes_s="6.5, 2", seed="7")
    assert answer.status_code == 202, answer.text
    status = studio.wait(answer.json()["id"])
    assert status["status"] == "done", status
    assert status["request"]["keyframes_s"] == [2.0, 6.5]
    assert status["request"]["song"] == first["request"]["song"]
    assert status["result"]["edit"]["kind"] == "keyframes"
    assert status["result"]["edit"]["keyframes_s"] == [2.0, 6.5]
    before, after = dance_of(studio, first["id"]), dance_of(studio, status["id"])
    assert len(after) == len(before)
    for frame in (60, 195):
        assert np.abs(after.pose[frame] - before.pose[frame]).max() < 1e-6
    assert not np.array_equal(after.pose[120:150], before.pose[120:150])  # a new take between
    # An edit of that take is no longer a pinned-poses edit: its own fields only.
    upper = studio.wait(edit(studio, edit_of=status["id"], keep="upper").json()["id"])
    assert upper["status"] == "done", upper
    assert "keyframes_s" not in upper["request"] and upper["request"]["keep"] == "upper"


def test_bad_edits_are_one_line_422s(studio: Studio, first: dict, styled) -> None:  # noqa: F811
    duration = first["result"]["duration_s"]
    for fields, message in (
        ({"edit_of": "nope", "from_s": "1", "to_s": "2"}, "give the id of a finished dance"),
        ({"edit_of": first["id"], "from_s": "3", "to_s": "2"}, "from_s before to_s"),
        ({"edit_of": first["id"], "from_s": "3", "to_s": "99"}, f"(0-{duration:.2f} s)"),
        ({"edit_of": first["id"], "from_s": "x", "to_s": "2"}, "from_s must be a time"),
        ({"edit_of": first["id"]}, "give one of from_s and to_s"),
        ({"edit_of": first["id"], "from_s": "1", "to_s": "2", "keep": "upper"}, "give one of"),
        ({"edit_of": first["id"], "keyframes_s": "1", "keep": "upper"}, "give one of"),
        ({"edit_of": first["id"], "keyframes_s": "x"}, "keyframes_s must be times in seconds"),
        ({"edit_of": first["id"], "keyframes_s": "1,-2"}, "not '-2'"),
        ({"edit_of": first["id"], "keyframes_s": "1,99"}, f"within the dance (0-{duration:.2f} s)"),
        ({"edit_of": first["id"], "keyframes_s": "1,1.01"}, "two pinned poses on one frame"),
        (
            {"edit_of": first["id"], "keyframes_s": ",".join(str(t) for t in range(17))},
            "at most 16 pinned poses, not 17",
        ),
        ({"edit_of": first["id"], "song": "../../etc/passwd"}, "of this studio's songs"),
        ({"edit_of": first["id"], "song": "0" * 64 + ".wav"}, "of this studio's songs"),
        (
            {"edit_of": first["id"], "song": first["request"]["song"]},
            "nothing to continue; give a longer song",
        ),
        ({"edit_of": first["id"], "song": first["request"]["song"], "keep": "upper"}, "give one"),
        ({"edit_of": first["id"], "keep": "middle"}, "keep must be upper or lower"),
        ({"edit_of": first["id"], "keep": "upper", "seed": "-1"}, "seed must be a whole"),
        ({"edit_of": first["id"], "keep": "upper", "model": "plain"}, "leave model out"),
        ({"edit_of": first["id"], "keep": "upper", "style": "tango"}, "unknown style 'tango'"),
    ):
        answer = edit(studio, **fields)
        assert answer.status_code == 422, (fields, answer.text)
        error = answer.json()["error"]
        assert message in error and "\n" not in error, (fields, error)
    songs = sorted(path.name for path in (studio.work_dir / "songs").iterdir())
    # A continuation's upload is checked like a new dance's; a bad edit never stores it.
    files = {"edit_of": (None, first["id"]), "song": ("s.wav", io.BytesIO(b"x"), "audio/wav")}
    answer = requests.post(f"{studio.url}/api/dances", files=files, timeout=30)
    assert answer.status_code == 422 and "cannot be decoded as audio" in answer.json()["error"]
    short = io.BytesIO(Path(styled["songs"]["c3"]).read_bytes())
    files = {"edit_of": (None, first["id"]), "song": ("same.wav", short, "audio/wav"),
             "keep": (None, "upper")}  # fmt: skip
    answer = requests.post(f"{studio.url}/api/dances", files=files, timeout=30)
    assert answer.status_code == 422 and "give one of" in answer.json()["error"]
    short.seek(0)
    files = {"edit_of": (None, first["id"]), "song": ("same.wav", short, "audio/wav")}
    answer = requests.post(f"{studio.url}/api/dances", files=files, timeout=30)
    error = answer.json()["error"]
    assert answer.status_code == 422 and "'same.wav' lasts 24.00 s" in error, error
    assert sorted(path.name for path in (studio.work_dir / "songs").iterdir()) == songs
    # The server keeps serving.
    assert requests.get(f"{studio.url}/api/models", timeout=10).status_code == 200


@pytest.fixture
def chromium():
    driver = headless_chromium(size="1300,760")
    try:
        yield driver
    finally:
        driver.quit()


def test_page_picks_a_style_and_dances_bars_anew(models, styled, chromium, tmp_path) -> None:  # noqa: F811
    """The picker: hidden for the demo's model, auto plus the styles for a styled one, the
    style the music called for shown; then "another take of these bars" in the page."""
    with serve(models, tmp_path / "work") as studio:
        chromium.get(studio.url)
        wait_for(chromium, "return window.kakashiStudio.models !== null")
        wait_for(chromium, "return window.kakashiStudio.loaded")
        assert chromium.execute_script("return document.getElementById('model').value") == ("plain")
        assert not chromium.find_element("id", "stylebox").is_displayed()
        chromium.execute_script(
            "const s = document.getElementById('model'); s.value = 'styled';"
            "s.dispatchEvent(new Event('change'))"
        )
        assert chromium.find_element("id", "stylebox").is_displayed()
        options = chromium.execute_script(
            "return [...document.getElementById('style').options].map((o) => o.value)"
        )
        assert options == ["auto", "cha-cha", "waltz"]
        chromium.find_element("id", "song").send_keys(str(styled["songs"]["c3"]))
        chromium.find_element("id", "dance").click()
        first = wait_for(
            chromium,
            "const s = window.kakashiStudio.status; "
            "return s && (s.status === 'done' || s.status === 'failed') && s",
            timeout=300,
        )
        assert first["status"] == "done", first
        assert first["request"]["style"] == "auto"
        inferred = chromium.find_element("id", "inferred").text
        assert inferred.startswith("style cha-cha (from the music, ") and inferred.endswith("%)")

        # Asking for a style: the take dances it.
        chromium.execute_script("document.getElementById('style').value = 'waltz'")
        chromium.find_element("id", "another").click()
        asked = wait_for(
            chromium,
            "const s = window.kakashiStudio.status; return s && s.status === 'done' && "
            "window.kakashiStudio.takes.length === 2 && s.id === window.kakashiStudio.takes[1].id"
            " && s",
            timeout=300,
        )
        assert (asked["result"]["style"], asked["request"]["style"]) == ("waltz", "waltz")
        assert chromium.find_element("id", "inferred").text == "style waltz (as asked)"

        # Another take of bars 4-8 s of the shown (waltz) take; the span offered first is
        # two bars on the take's beats.
        assert chromium.find_element("id", "edit").is_displayed()
        beats = asked["result"]["beats"]
        offered = [
            float(chromium.find_element("id", n).get_attribute("value")) for n in ("from", "to")
        ]
        assert offered[0] in beats and offered[1] == beats[beats.index(offered[0]) + 8]
        for name, value in (("from", "4"), ("to", "8")):
            box = chromium.find_element("id", name)
            box.clear()
            box.send_keys(value)
        chromium.find_element("id", "retake").click()
        retaken = wait_for(
            chromium,
            "const s = window.kakashiStudio.status; return s && s.status === 'done' && "
            "window.kakashiStudio.takes.length === 3 && s.id === window.kakashiStudio.takes[2].id"
            " && s",
            timeout=300,
        )
        assert retaken["request"]["edit_of"] == asked["id"]
        assert retaken["result"]["style"] == "waltz"  # the edited take's style
        labels = [e.text for e in chromium.find_elements("css selector", ".take > div:first-child")]
        assert labels[0].endswith("· bars 4-8 s anew"), labels
        assert chromium.execute_script("return window.kakashiStudio.current.id") == retaken["id"]
        before, after = dance_of(studio, asked["id"]), dance_of(studio, retaken["id"])
        assert np.array_equal(after.pose[:120], before.pose[:120])
        assert np.array_equal(after.pose[240:], before.pose[240:])
        assert not np.array_equal(after.pose[120:240], before.pose[120:240])
        # A reload lists the edited take with what it edits.
        chromium.refresh()
        wait_for(chromium, "return window.kakashiStudio.loaded")
        wait_for(chromium, "return document.querySelectorAll('.take').length === 3", 30)
        labels = [e.text for e in chromium.find_elements("css selector", ".take > div:first-child")]
        assert any(label.endswith("· bars 4-8 s anew") for label in labels), labels
        shot = tmp_path / "studio-edit.png"
        chromium.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000


_DONE_TAKE = (
    "const s = window.kakashiStudio.status; return s && s.status === 'done' && "
    "window.kakashiStudio.takes.length === arguments[0] && "
    "s.id === window.kakashiStudio.takes[arguments[0] - 1].id && s"
)


def _done_take(chromium, count: int) -> dict:
    """The status of the page's ``count``-th take once it is done (and shown)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = chromium.execute_script(_DONE_TAKE, count)
        if status:
            return status
        error = chromium.execute_script("return window.kakashiStudio.error")
        assert not error, error
        time.sleep(0.1)
    raise AssertionError(f"take {count} not done")


def _labels(chromium) -> list[str]:
    return [e.text for e in chromium.find_elements("css selector", ".take > div:first-child")]


def test_page_pins_poses_and_continues_a_take(models, styled, chromium, tmp_path) -> None:  # noqa: F811
    """Pin the poses at 2 s and 6.5 s of a take and make a new take through them; continue
    the take to a longer song uploaded above, then another take to it as one of the
    studio's songs."""
    longer = clip(tmp_path, 30.0)
    with serve(models, tmp_path / "work") as studio:
        chromium.get(studio.url)
        wait_for(chromium, "return window.kakashiStudio.loaded")
        chromium.find_element("id", "song").send_keys(str(styled["songs"]["c3"]))
        chromium.find_element("id", "dance").click()
        first = _done_take(chromium, 1)
        assert chromium.find_element("id", "throughpins").get_attribute("disabled")
        # Pause the dance at 2 s, pin; at 6.5 s, pin (the viewer's scrub bar, as a person).
        wait_for(chromium, "return window.kakashiStudio.autoplay !== null", 30)
        viewer = "document.getElementById('viewer').contentWindow"
        chromium.execute_script(
            f"const v = {viewer}; if (v.kakashiViewer.playing) "
            "v.document.getElementById('play').click()"
        )
        for seconds, frame in ((6.5, 195), (2.0, 60)):
            chromium.execute_script(
                f"const scrub = {viewer}.document.getElementById('scrub');"
                "scrub.value = arguments[0]; scrub.dispatchEvent(new Event('input'))",
                seconds,
            )
            wait_for(chromium, f"return {viewer}.kakashiViewer.frame === {frame}", 20)
            chromium.find_element("id", "pin").click()
        chromium.find_element("id", "pin").click()  # the same pose twice is one pin
        assert chromium.execute_script("return window.kakashiStudio.pins") == [2.0, 6.5]
        chips = [e.text for e in chromium.find_elements("css selector", "#pins .pinned")]
        assert chips == ["2.00 s ×", "6.50 s ×"]
        chromium.find_element("id", "throughpins").click()
        keyed = _done_take(chromium, 2)
        assert keyed["request"]["edit_of"] == first["id"]
        assert keyed["request"]["keyframes_s"] == [2.0, 6.5]
        assert _labels(chromium)[0].endswith("· through 2 pinned poses"), _labels(chromium)
        assert chromium.execute_script("return window.kakashiStudio.pins") == []  # a new take
        before, after = dance_of(studio, first["id"]), dance_of(studio, keyed["id"])
        for frame in (60, 195):
            assert np.abs(after.pose[frame] - before.pose[frame]).max() < 1e-6

        # Continue the first take to a longer song, chosen above.
        chromium.find_element("css selector", f"#take-{first['id']} > div").click()
        wait_for(chromium, f"return window.kakashiStudio.current.id === '{first['id']}'")
        chromium.find_element("id", "song").send_keys(str(longer))
        assert chromium.find_element("id", "continueto").get_attribute("value") == "upload"
        chromium.find_element("id", "continue").click()
        continued = _done_take(chromium, 3)
        assert continued["request"]["edit_of"] == first["id"]
        assert continued["request"]["song_name"] == longer.name
        seed = continued["request"]["seed"]
        label = f"{longer.name} · plain · seed {seed} · continues another take"
        assert _labels(chromium)[0] == label, _labels(chromium)
        longer_dance = dance_of(studio, continued["id"])
        assert len(longer_dance) > len(before) + 100
        assert np.array_equal(longer_dance.pose[: len(before)], before.pose)
        assert np.array_equal(longer_dance.root[: len(before)], before.root)

        # The longer song is one of the studio's now: continue the pinned take to it.
        chromium.find_element("css selector", f"#take-{keyed['id']} > div").click()
        wait_for(chromium, f"return window.kakashiStudio.current.id === '{keyed['id']}'")
        options = chromium.execute_script(
            "return [...document.getElementById('continueto').options].map((o) => "
            "[o.value, o.text])"
        )
        stored = continued["request"]["song"]
        assert options == [["upload", "the song chosen above"], [stored, f"{longer.name} (30.0 s)"]]
        chromium.execute_script(f"document.getElementById('continueto').value = '{stored}'")
        chromium.find_element("id", "continue").click()
        again = _done_take(chromium, 4)
        assert (again["request"]["edit_of"], again["request"]["song"]) == (keyed["id"], stored)
        keyed_dance, onwards = after, dance_of(studio, again["id"])
        assert np.array_equal(onwards.pose[: len(keyed_dance)], keyed_dance.pose)
        assert np.array_equal(onwards.root[: len(keyed_dance)], keyed_dance.root)
        # A reload lists the takes with what they edit.
        chromium.refresh()
        wait_for(chromium, "return window.kakashiStudio.loaded")
        wait_for(chromium, "return document.querySelectorAll('.take').length === 4", 30)
        labels = _labels(chromium)
        assert sum(label.endswith("· continues another take") for label in labels) == 2, labels
        assert sum(label.endswith("· through 2 pinned poses") for label in labels) == 1, labels
        shot = tmp_path / "studio-pins-continue.png"
        chromium.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
