"""kakashi viewer: the self-contained HTML page, opened from disk in real headless Chromium
with the network switched off, playing a real dance with its music."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, headless_chromium
from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.shards import read_dance


@pytest.fixture(scope="module")
def page(demo_shards: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("viewer")
    dance = folder / "dancer-c.npz"
    read_dance(demo_shards / "split=test" / "dancer-c.parquet").save(dance)
    out = folder / "dancer-c.html"
    audio = demo_shards.parent / "clips" / "dancer-c.wav"
    assert main(["viewer", str(dance), "--audio", str(audio), "-o", str(out)]) == 0
    return out


@pytest.fixture
def browser():
    driver = headless_chromium("--autoplay-policy=no-user-gesture-required")
    # No network at all: the page must not need it.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {script}")


def state(driver) -> dict:
    return driver.execute_script("return window.kakashiViewer")


def test_page_is_self_contained(page):
    text = page.read_text()
    # Every src/href and every import-map entry is an embedded data: URL.
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text)
    assert links and all(link.startswith("data:") for link in links), links
    import_map = json.loads(re.search(r'<script type="importmap">(.*?)</script>', text).group(1))
    modules = import_map["imports"]
    assert set(modules) == {
        "three",
        "three/addons/controls/OrbitControls.js",
        "three/addons/loaders/GLTFLoader.js",
        "three/addons/utils/BufferGeometryUtils.js",
    }
    for url in modules.values():
        assert url.startswith("data:text/javascript;base64,")
        source = base64.b64decode(url.split(",", 1)[1]).decode()
        # No import of a network URL, nor a relative one (a data: URL cannot resolve it);
        # "loaded from 'https://..." in a comment is not an import.
        imports = re.findall(
            r"""\bimport\b[^;'"]*?\bfrom\s*["']([^"']+)|\bimport\s*\(\s*["']([^"']+)""", source
        )
        for name in (first or second for first, second in imports):
            assert name == "three" or name.startswith("three/addons/"), name
    assert "THREE.WebGLRenderer" in text
    # The dance is embedded as float32 stage positions: the real motion, feet on the floor.
    data = json.loads(re.search(r'id="dance">(.*?)</script>', text, re.S).group(1))
    positions = np.frombuffer(base64.b64decode(data["positions"]), "<f4").reshape(-1, 17, 3)
    dance = Dance.load(page.with_suffix(".npz"))
    assert len(positions) == data["danceFrames"] == len(dance)
    assert data["frames"] >= len(dance)  # the song's length in frames
    np.testing.assert_allclose(
        positions[..., [0, 2]] - positions[:, :1, [0, 2]],
        dance.pose[..., [0, 2]] - dance.pose[:, :1, [0, 2]],
        atol=1e-5,
    )
    lowest = positions[:, [3, 6], 1].min(axis=1)
    assert np.percentile(lowest, 5) == pytest.approx(0.05, abs=0.01)


def test_viewer_plays_in_chromium_offline(page, browser, tmp_path):
    browser.get(page.as_uri())
    wait_for(browser, "return window.kakashiViewer && window.kakashiViewer.renders > 2")
    first = state(browser)
    assert first["playing"] is False and first["frame"] == 0
    assert first["drawnJoints"] == 17  # every joint is inside the camera's view
    # The character is shown by default, and the browser's skinning of the GLB agrees with
    # Kakashi's (kakashi.outputs.character) on where the body's lowest point is.
    assert first["style"] == "character" and first["characterReady"], first
    from kakashi.outputs.character import load_character, retarget

    character = load_character()
    motion = retarget(Dance.load(page.with_suffix(".npz")), character)
    browser.execute_script(
        "const s = document.getElementById('scrub'); s.value = 3;"
        "s.dispatchEvent(new Event('input'));"
    )
    wait_for(browser, "return Math.abs(window.kakashiViewer.characterTime - 3) < 1e-3")
    time.sleep(0.3)
    lowest = browser.execute_script("return window.kakashiViewer.lowestVertex()")
    expected = motion.skin(character, 90)[::4, 1].min()
    assert lowest == pytest.approx(expected, abs=0.005)
    assert -0.03 < lowest < 0.08  # feet near the floor
    body = tmp_path / "character.png"
    browser.save_screenshot(str(body))
    import cv2

    image = cv2.imread(str(body)).astype(int)
    # The mannequin's pale, nearly grey skin: far brighter than the floor and background.
    skin = (image.min(axis=-1) > 140) & ((image.max(axis=-1) - image.min(axis=-1)) < 40)
    assert skin.sum() > 5000, skin.sum()
    # The stick figure is a toggle away.
    browser.execute_script(
        "const s = document.getElementById('scrub'); s.value = 0;"
        "s.dispatchEvent(new Event('input'));"
    )
    wait_for(browser, "return window.kakashiViewer.time === 0")
    browser.find_element("id", "style").click()
    wait_for(browser, "return window.kakashiViewer.style === 'stick'")

    browser.find_element("id", "play").click()
    wait_for(browser, "return window.kakashiViewer.time > 1.5")
    playing = state(browser)
    audio_time = browser.execute_script("return document.getElementById('audio').currentTime")
    assert playing["playing"] is True and playing["clock"] == "audio", playing
    # The animation follows the audio clock.
    assert abs(playing["time"] - audio_time) < 0.5
    assert abs(playing["frame"] - playing["time"] * playing["fps"]) <= 2
    assert playing["drawnJoints"] == 17

    screenshot = tmp_path / "viewer.png"
    browser.save_screenshot(str(screenshot))
    paths = [body, screenshot]
    artifacts = REPO / "results" / "test-artifacts"
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        for path in (body, screenshot):
            shutil.copyfile(path, artifacts / f"viewer-{path.name}")
            paths.append(artifacts / f"viewer-{path.name}")
    except OSError:
        pass
    print("viewer screenshots:", ", ".join(map(str, paths)))

    image = cv2.imread(str(screenshot)).astype(int)
    saturated = (image.max(axis=-1) - image.min(axis=-1)) > 80  # blue/orange limbs
    assert saturated.sum() > 500

    # Pause stops the clock; scrubbing moves audio and picture together; speed sets the rate.
    browser.find_element("id", "play").click()
    wait_for(browser, "return !window.kakashiViewer.playing")
    # Let two frames render the paused position (software WebGL on a busy machine can take
    # longer than a fixed sleep).
    renders = state(browser)["renders"]
    wait_for(browser, f"return window.kakashiViewer.renders >= {renders + 2}")
    paused = state(browser)
    time.sleep(0.5)
    assert state(browser)["time"] == pytest.approx(paused["time"], abs=0.01)
    browser.execute_script(
        "const s = document.getElementById('scrub'); s.value = 5;"
        "s.dispatchEvent(new Event('input'));"
    )
    wait_for(browser, "return Math.abs(window.kakashiViewer.time - 5) < 0.05")
    assert state(browser)["frame"] == pytest.approx(150, abs=2)
    browser.execute_script(
        "const s = document.getElementById('speed'); s.value = '2';"
        "s.dispatchEvent(new Event('change'));"
    )
    assert browser.execute_script("return document.getElementById('audio').playbackRate") == 2
    browser.find_element("id", "play").click()
    wait_for(browser, "return window.kakashiViewer.playing && window.kakashiViewer.time > 5.2")
    audio_clock = "return document.getElementById('audio').currentTime"
    start_time, start_wall = browser.execute_script(audio_clock), time.monotonic()
    time.sleep(1.0)
    rate = (browser.execute_script(audio_clock) - start_time) / (time.monotonic() - start_wall)
    print(f"viewer time advances at {rate:.2f}x wall time with speed 2x")
    assert 1.5 < rate < 2.6
    # Nothing was fetched from the network: every resource the page loaded is embedded.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map((r) => r.name)"
    )
    assert all(name.startswith("data:") for name in resources), resources


def test_bad_inputs_are_clear_errors(page, demo_shards, tmp_path, capsys):
    import soundfile

    dance = page.with_suffix(".npz")
    song, rate = soundfile.read(str(demo_shards.parent / "clips" / "dancer-c.wav"))
    short = tmp_path / "short.wav"
    soundfile.write(str(short), song[: rate * 5], rate)  # the first 5 s of the real song
    out = tmp_path / "out" / "v.html"
    assert main(["viewer", str(dance), "--audio", str(short), "-o", str(out)]) == 1
    assert "short.wav lasts 5.00 s" in capsys.readouterr().err
    assert main(["viewer", str(dance), "--audio", str(dance), "-o", str(out)]) == 1
    assert "cannot read audio from" in capsys.readouterr().err
    nan = Dance.load(dance)
    nan.pose[3] = np.nan
    np.savez(tmp_path / "nan.npz", pose=nan.pose, root=nan.root, fps=nan.fps)
    assert main(["viewer", str(tmp_path / "nan.npz"), "--audio", str(short), "-o", str(out)]) == 1
    assert "nan.npz: 1 frame(s) contain NaN" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
