"""A self-contained HTML page that plays a dance in 3-D with its music.

Everything is inside the one file, so it opens from disk with no network: three.js and
its OrbitControls (bundled in ``kakashi/assets``) as ES modules behind an import map of
``data:`` URLs, the dance as base64 float32 world positions, and the song as a base64
``data:`` URL on an ``<audio>`` element. The audio element is the clock: each animation
frame shows ``floor(audio.currentTime * fps)``, so pausing, scrubbing and the speed control
(``playbackRate``) keep picture and music together.

The page publishes its state as ``window.kakashiViewer`` (frame, time, playing, clock,
drawnJoints, renders, ...) so tests and scripts can check what it shows.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

from kakashi import skeleton
from kakashi.atomic import atomic_output
from kakashi.dance import Dance
from kakashi.errors import MediaError
from kakashi.outputs.stage import song_frames, stage_positions

_AUDIO_TYPES = {
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}

THREE_VERSION = "0.170.0"


def _asset(name: str) -> bytes:
    return resources.files("kakashi").joinpath("assets", name).read_bytes()


def _data_url(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _side(joint: int) -> str:
    name = skeleton.JOINTS[joint]
    return "left" if name.startswith("left") else "right" if name.startswith("right") else "mid"


def viewer_html(
    dance: Dance, audio: bytes, audio_type: str, frames: int, title: str, audio_url: str = ""
) -> str:
    """The page's text for ``dance`` (shown for ``frames`` frames) and the song's bytes, or
    a page that refers to the song at ``audio_url`` (the studio: no copy per dance)."""
    # Only the dance's own frames are embedded; the page holds the last one to the end.
    world = stage_positions(dance).astype("<f4")
    payload = {
        "fps": dance.fps,
        "frames": frames,
        "danceFrames": len(dance),
        "joints": list(skeleton.JOINTS),
        "parents": list(skeleton.PARENTS),
        "sides": [_side(joint) for joint in range(skeleton.NUM_JOINTS)],
        "positions": base64.b64encode(world.tobytes()).decode("ascii"),
    }
    imports = {
        "three": _data_url("text/javascript", _asset("three.module.min.js")),
        "three/addons/controls/OrbitControls.js": _data_url(
            "text/javascript", _asset("OrbitControls.js")
        ),
    }
    # "</" cannot appear inside the JSON script blocks: base64 and names never contain it,
    # but escape anyway so a strange title cannot end the block early.
    dance_json = json.dumps(payload).replace("</", "<\\/")
    import_map = json.dumps({"imports": imports})
    page = _TEMPLATE
    page = page.replace("@TITLE@", html.escape(title))
    page = page.replace("@IMPORTMAP@", import_map)
    page = page.replace("@DANCE@", dance_json)
    page = page.replace("@AUDIO@", html.escape(audio_url) or _data_url(audio_type, audio))
    page = page.replace("@SCRIPT@", _SCRIPT)
    return page


def write_viewer(
    dance_path: str | Path,
    audio_path: str | Path,
    output: str | Path,
    title: str | None = None,
    audio_url: str = "",
) -> int:
    """Write the viewer page for a dance file and its song; return the page's size in bytes."""
    dance = Dance.load(dance_path)
    audio_path = Path(audio_path)
    frames = song_frames(audio_path, dance, dance_path)
    audio_type = _AUDIO_TYPES.get(audio_path.suffix.lower())
    if audio_type is None:
        raise MediaError(
            f"{audio_path}: browsers play {', '.join(sorted(_AUDIO_TYPES))} files; "
            "convert the song to one of them (e.g. OGG or MP3)"
        )
    audio = b"" if audio_url else audio_path.read_bytes()
    page = viewer_html(
        dance, audio, audio_type, frames, title or Path(dance_path).stem, audio_url
    ).encode("utf-8")
    with atomic_output(output) as temporary:
        temporary.write_bytes(page)
    return len(page)


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@ - Kakashi</title>
<style>
  html, body { margin: 0; height: 100%; background: #1c1e22; color: #ddd;
               font: 14px system-ui, sans-serif; overflow: hidden; }
  #stage { position: absolute; inset: 0 0 56px 0; }
  #bar { position: absolute; left: 0; right: 0; bottom: 0; height: 56px; display: flex;
         align-items: center; gap: 12px; padding: 0 14px; background: #26292f;
         box-sizing: border-box; }
  #bar button, #bar select { background: #3a3f47; color: #eee; border: 0;
         border-radius: 4px; padding: 6px 12px; font: inherit; cursor: pointer; }
  #scrub { flex: 1; }
  #clock { font-variant-numeric: tabular-nums; min-width: 9em; text-align: right; }
  #title { position: absolute; top: 10px; left: 14px; opacity: 0.7; }
</style>
<script type="importmap">@IMPORTMAP@</script>
</head>
<body>
<div id="stage"></div>
<div id="title">@TITLE@</div>
<div id="bar">
  <button id="play" type="button" title="play / pause (space)">Play</button>
  <input id="scrub" type="range" min="0" max="1" step="any" value="0" aria-label="time">
  <label>speed <select id="speed">
    <option value="0.25">0.25x</option><option value="0.5">0.5x</option>
    <option value="1" selected>1x</option><option value="1.5">1.5x</option>
    <option value="2">2x</option></select></label>
  <span id="clock">0.00 / 0.00 s</span>
</div>
<audio id="audio" preload="auto" src="@AUDIO@"></audio>
<script type="application/json" id="dance">@DANCE@</script>
<script type="module">@SCRIPT@</script>
</body>
</html>
"""

_SCRIPT = r"""
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const data = JSON.parse(document.getElementById('dance').textContent);
const raw = Uint8Array.from(atob(data.positions), (c) => c.charCodeAt(0));
const positions = new Float32Array(raw.buffer);
const J = data.joints.length, fps = data.fps, frames = data.frames;
const audio = document.getElementById('audio');
const playButton = document.getElementById('play');
const scrub = document.getElementById('scrub');
const speed = document.getElementById('speed');
const clock = document.getElementById('clock');
const state = window.kakashiViewer = {
  ready: false, frame: 0, time: 0, playing: false, clock: 'audio', drawnJoints: 0,
  renders: 0, frames, fps, duration: frames / fps, error: null,
};

const stage = document.getElementById('stage');
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio || 1);
stage.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x1c1e22);
scene.add(new THREE.HemisphereLight(0xffffff, 0x444455, 2.2));
const sun = new THREE.DirectionalLight(0xffffff, 1.5);
sun.position.set(2, 5, 4);
scene.add(sun);
// A small grid that moves with the dancer in whole cells (so it reads as fixed to the
// floor): lines long enough to pass behind the camera vanish in some software renderers.
const grid = new THREE.GridHelper(6, 12, 0x6a6f78, 0x3a3e45);
scene.add(grid);

const camera = new THREE.PerspectiveCamera(40, 1, 0.05, 100);
const controls = new OrbitControls(camera, renderer.domElement);
const joint = (f, j) => new THREE.Vector3(
  positions[(f * J + j) * 3], positions[(f * J + j) * 3 + 1], positions[(f * J + j) * 3 + 2]);
const start = joint(0, 0);
controls.target.set(start.x, 0.9, start.z);
camera.position.set(start.x + 1.1, 1.4, start.z + 3.0);
controls.update();

const colours = { left: 0x3296eb, right: 0xf07828, mid: 0xe1e1e1 };
const materials = {};
for (const side in colours) {
  materials[side] = new THREE.MeshStandardMaterial({ color: colours[side], roughness: 0.6 });
}
const sphere = new THREE.SphereGeometry(0.028, 16, 12);
const cylinder = new THREE.CylinderGeometry(0.018, 0.018, 1, 12);
const jointMeshes = data.sides.map((side) => {
  const mesh = new THREE.Mesh(sphere, materials[side]);
  scene.add(mesh);
  return mesh;
});
const bones = [];
data.parents.forEach((parent, child) => {
  if (parent < 0) return;
  const mesh = new THREE.Mesh(cylinder, materials[data.sides[child]]);
  scene.add(mesh);
  bones.push({ parent, child, mesh });
});

const yAxis = new THREE.Vector3(0, 1, 0);
const a = new THREE.Vector3(), b = new THREE.Vector3(), ndc = new THREE.Vector3();
const followed = new THREE.Vector3(start.x, 0.9, start.z);
let internalStart = null, internalOffset = 0;

function pose(frame) {
  for (let j = 0; j < J; j++) {
    jointMeshes[j].position.set(positions[(frame * J + j) * 3],
      positions[(frame * J + j) * 3 + 1], positions[(frame * J + j) * 3 + 2]);
  }
  for (const { parent, child, mesh } of bones) {
    a.copy(jointMeshes[parent].position);
    b.copy(jointMeshes[child].position).sub(a);
    const length = b.length();
    mesh.position.copy(a).addScaledVector(b, 0.5);
    mesh.scale.set(1, Math.max(length, 1e-4), 1);
    if (length > 1e-6) mesh.quaternion.setFromUnitVectors(yAxis, b.divideScalar(length));
  }
}

function currentTime() {
  if (state.clock === 'audio') return audio.currentTime;
  // Fallback when the browser refuses to play the audio: a wall clock, so the dance
  // still moves (state.clock says which clock is in use).
  if (!state.playing || internalStart === null) return internalOffset;
  return internalOffset + (performance.now() - internalStart) / 1000 * audio.playbackRate;
}

function resize() {
  const w = stage.clientWidth, h = stage.clientHeight;
  renderer.setSize(w, h, false);
  renderer.domElement.style.width = w + 'px';
  renderer.domElement.style.height = h + 'px';
  camera.aspect = w / Math.max(h, 1);
  camera.updateProjectionMatrix();
}
window.addEventListener('resize', resize);
resize();

function tick() {
  const time = Math.min(currentTime(), state.duration);
  const frame = Math.max(0, Math.min(frames - 1, Math.floor(time * fps + 1e-6)));
  pose(Math.min(frame, data.danceFrames - 1));
  // The camera follows the pelvis smoothly, keeping the user's orbit offset.
  const pelvis = jointMeshes[0].position;
  const goal = new THREE.Vector3(pelvis.x, 0.9, pelvis.z);
  const step = goal.sub(followed).multiplyScalar(0.08);
  followed.add(step);
  controls.target.add(step);
  camera.position.add(step);
  controls.update();
  grid.position.set(Math.round(followed.x * 2) / 2, 0, Math.round(followed.z * 2) / 2);
  renderer.render(scene, camera);
  let drawn = 0;
  for (const mesh of jointMeshes) {
    ndc.copy(mesh.position).project(camera);
    if (Math.abs(ndc.x) <= 1 && Math.abs(ndc.y) <= 1 && ndc.z <= 1) drawn++;
  }
  Object.assign(state, { frame, time, drawnJoints: drawn, renders: state.renders + 1 });
  if (document.activeElement !== scrub) scrub.value = time;
  clock.textContent = time.toFixed(2) + ' / ' + state.duration.toFixed(2) + ' s';
  if (state.playing && time >= state.duration) setPlaying(false);
}

async function setPlaying(play) {
  if (play) {
    if (currentTime() >= state.duration - 1e-3) seek(0);
    try {
      if (state.clock === 'audio') await audio.play();
    } catch (err) {
      state.clock = 'internal';
      state.error = String(err);
      internalOffset = audio.currentTime;
    }
    internalStart = performance.now();
  } else {
    if (state.clock === 'audio') audio.pause();
    internalOffset = currentTime();
    internalStart = null;
  }
  state.playing = play;
  playButton.textContent = play ? 'Pause' : 'Play';
}

function seek(t) {
  audio.currentTime = t;
  internalOffset = t;
  if (internalStart !== null) internalStart = performance.now();
}

scrub.max = state.duration;
playButton.addEventListener('click', () => setPlaying(!state.playing));
scrub.addEventListener('input', () => seek(Number(scrub.value)));
speed.addEventListener('change', () => { audio.playbackRate = Number(speed.value); });
audio.addEventListener('ended', () => setPlaying(false));
window.addEventListener('keydown', (event) => {
  if (event.code === 'Space' && event.target.tagName !== 'SELECT') {
    event.preventDefault();
    setPlaying(!state.playing);
  }
});
pose(0);
renderer.setAnimationLoop(tick);
state.ready = true;
"""
