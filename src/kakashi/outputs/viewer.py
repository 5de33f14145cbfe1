"""A self-contained HTML page that plays a dance in 3-D with its music.

Everything is inside the one file, so it opens from disk with no network: three.js, its
OrbitControls and GLTFLoader (bundled in ``kakashi/assets``) as ES modules behind an import
map of ``data:`` URLs, the dance twice (the character's GLB from
:mod:`kakashi.outputs.glb`, and base64 float32 stage positions for the stick figure), and
the song as a base64 ``data:`` URL on an ``<audio>`` element. The character, lit by a sun
that casts its shadow on the floor, is shown by default; the **Stick figure** button (key
``S``) swaps it for the 17-joint skeleton, drawn at the character's scale so both stand in
the same place. The audio element is the clock: each animation frame shows
``floor(audio.currentTime * fps)`` and sets the character's animation to
``audio.currentTime``, so pausing, scrubbing and the speed control (``playbackRate``) keep
picture and music together.

The page publishes its state as ``window.kakashiViewer`` (frame, time, playing, clock,
style, drawnJoints, renders, ``lowestVertex()`` ...) so tests and scripts can check what it
shows.
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
from kakashi.outputs.character import load_character, retarget
from kakashi.outputs.glb import glb_document
from kakashi.outputs.stage import _ANKLE_HEIGHT, song_frames, stage_positions

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


def _gltf_loader() -> bytes:
    # GLTFLoader imports BufferGeometryUtils by a relative path, which a data: URL cannot
    # resolve: point it at the import map's name instead.
    return _asset("GLTFLoader.js").replace(
        b"'../utils/BufferGeometryUtils.js'", b"'three/addons/utils/BufferGeometryUtils.js'"
    )


def viewer_html(
    dance: Dance,
    audio: bytes,
    audio_type: str,
    frames: int,
    title: str,
    audio_url: str = "",
    glb_url: str = "",
) -> str:
    """The page's text for ``dance`` (shown for ``frames`` frames) and the song's bytes, or
    a page that refers to the song at ``audio_url`` and to the character's GLB at
    ``glb_url`` (the studio, which serves both beside the page: no copies per dance; the
    GLB is 0.8 MB for a 2-s song, 1.1 MB as base64 in the page)."""
    # Only the dance's own frames are embedded; the page holds the last one to the end.
    world = stage_positions(dance).astype("<f4")
    character = load_character()
    motion = retarget(dance, character)
    glb = b"" if glb_url else b"".join(glb_document(motion, character).save_to_bytes())
    # The stick figure drawn where the character stands: stage positions scaled like the
    # character's and lifted so their ankles match (kakashi.outputs.character.retarget).
    rig_ankle = float(character.rest_joints()[list(skeleton.ANKLES), 1].mean())
    payload = {
        "glb": base64.b64encode(glb).decode("ascii"),
        "glbUrl": glb_url,
        "stickScale": motion.scale,
        "stickLift": rig_ankle - _ANKLE_HEIGHT * motion.scale,
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
        "three/addons/loaders/GLTFLoader.js": _data_url("text/javascript", _gltf_loader()),
        "three/addons/utils/BufferGeometryUtils.js": _data_url(
            "text/javascript", _asset("BufferGeometryUtils.js")
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
    glb_url: str = "",
) -> int:
    """Write the viewer page for a dance file and its song; return the page's size in bytes.
    ``audio_url`` and ``glb_url``: refer to the song and the character's GLB instead of
    embedding them (:func:`viewer_html`)."""
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
        dance, audio, audio_type, frames, title or Path(dance_path).stem, audio_url, glb_url
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
  <button id="style" type="button" title="character / stick figure (S)">Stick figure</button>
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
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const data = JSON.parse(document.getElementById('dance').textContent);
const bytes = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const stagePositions = new Float32Array(bytes(data.positions).buffer);
// The stick figure stands where the character does (same scale, ankles at the same height).
const positions = stagePositions.map(
  (v, i) => v * data.stickScale + (i % 3 === 1 ? data.stickLift : 0));
const J = data.joints.length, fps = data.fps, frames = data.frames;
const audio = document.getElementById('audio');
const playButton = document.getElementById('play');
const styleButton = document.getElementById('style');
const scrub = document.getElementById('scrub');
const speed = document.getElementById('speed');
const clock = document.getElementById('clock');
const state = window.kakashiViewer = {
  ready: false, frame: 0, time: 0, playing: false, clock: 'audio', drawnJoints: 0,
  renders: 0, frames, fps, duration: frames / fps, error: null, style: 'character',
  characterReady: false, characterTime: 0,
};

const stage = document.getElementById('stage');
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio || 1);
renderer.shadowMap.enabled = true;
renderer.shadowMap.type = THREE.PCFSoftShadowMap;
stage.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x1c1e22);
scene.add(new THREE.HemisphereLight(0xffffff, 0x444455, 1.6));
// The sun casts the dancer's shadow on the floor (feet on the floor read as contact).
const sun = new THREE.DirectionalLight(0xffffff, 2.2);
sun.castShadow = true;
sun.shadow.mapSize.set(1024, 1024);
Object.assign(sun.shadow.camera, { left: -2, right: 2, top: 2, bottom: -2, near: 0.5, far: 12 });
sun.shadow.bias = -0.0005;
scene.add(sun, sun.target);
const SUN_OFFSET = new THREE.Vector3(1.2, 5, 2.5);
// A floor disc and a small grid that move with the dancer in whole cells (so they read as
// fixed to the floor): lines long enough to pass behind the camera vanish in some software
// renderers.
const floor = new THREE.Mesh(new THREE.CircleGeometry(3.2, 64),
  new THREE.MeshStandardMaterial({ color: 0x4a4f58, roughness: 0.95 }));
floor.rotation.x = -Math.PI / 2;
floor.receiveShadow = true;
scene.add(floor);
const grid = new THREE.GridHelper(6, 12, 0x6a6f78, 0x3a3e45);
grid.position.y = 0.001;
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
const stick = new THREE.Group();
scene.add(stick);
const sphere = new THREE.SphereGeometry(0.028, 16, 12);
const cylinder = new THREE.CylinderGeometry(0.018, 0.018, 1, 12);
const jointMeshes = data.sides.map((side) => {
  const mesh = new THREE.Mesh(sphere, materials[side]);
  mesh.castShadow = true;
  stick.add(mesh);
  return mesh;
});
const bones = [];
data.parents.forEach((parent, child) => {
  if (parent < 0) return;
  const mesh = new THREE.Mesh(cylinder, materials[data.sides[child]]);
  mesh.castShadow = true;
  stick.add(mesh);
  bones.push({ parent, child, mesh });
});

// The character: the GLB of kakashi export-glb (skinned mesh, one animation).
const character = { root: null, mesh: null, mixer: null, duration: 0, hips: null };
const glbBytes = data.glbUrl
  ? fetch(data.glbUrl).then((answer) => {
      if (!answer.ok) throw new Error(`${data.glbUrl}: HTTP ${answer.status}`);
      return answer.arrayBuffer();
    })
  : Promise.resolve(bytes(data.glb).buffer);
glbBytes.then((buffer) => new GLTFLoader().parse(buffer, '', (gltf) => {
  character.root = gltf.scene;
  gltf.scene.traverse((node) => {
    if (node.isSkinnedMesh) {
      node.castShadow = true;
      node.frustumCulled = false;  // the bind-pose bounds do not follow the dance
      character.mesh = node;
    }
  });
  const clip = gltf.animations[0];
  character.mixer = new THREE.AnimationMixer(gltf.scene);
  character.mixer.clipAction(clip).play();
  character.duration = clip.duration;
  character.hips = gltf.scene.getObjectByName('Hips');
  scene.add(gltf.scene);
  state.characterReady = true;
  setStyle(state.style);
  state.ready = true;
}, (err) => characterFailed(err))).catch((err) => characterFailed(err));

function characterFailed(err) {
  state.error = 'character: ' + String(err);
  setStyle('stick');
  state.ready = true;
}

function setStyle(style) {
  state.style = style;
  const body = style === 'character' && character.root !== null;
  if (character.root) character.root.visible = body;
  stick.visible = !body;
  styleButton.textContent = body ? 'Stick figure' : 'Character';
}

// Lowest point of the posed body (metres above the floor), from every 4th skinned vertex.
state.lowestVertex = () => {
  if (!character.mesh) return null;
  const mesh = character.mesh, v = new THREE.Vector3();
  const count = mesh.geometry.attributes.position.count;
  let lowest = Infinity;
  mesh.updateMatrixWorld(true);
  for (let i = 0; i < count; i += 4) {
    mesh.getVertexPosition(i, v);  // a SkinnedMesh's includes the bone transforms
    v.applyMatrix4(mesh.matrixWorld);
    lowest = Math.min(lowest, v.y);
  }
  return lowest;
};

const yAxis = new THREE.Vector3(0, 1, 0);
const a = new THREE.Vector3(), b = new THREE.Vector3(), ndc = new THREE.Vector3();
const followed = new THREE.Vector3(start.x, 0.9, start.z);
let internalStart = null, internalOffset = 0, snapCamera = false;

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
  if (character.mixer) {
    // The audio clock drives the animation too; past the dance's end the last pose holds.
    state.characterTime = Math.min(time, character.duration);
    character.mixer.setTime(state.characterTime);
  }
  // The camera follows the pelvis smoothly, keeping the user's orbit offset.
  const pelvis = jointMeshes[0].position;
  const goal = new THREE.Vector3(pelvis.x, 0.9, pelvis.z);
  const step = goal.sub(followed).multiplyScalar(snapCamera ? 1 : 0.08);
  snapCamera = false;
  followed.add(step);
  controls.target.add(step);
  camera.position.add(step);
  controls.update();
  const cell = (x) => Math.round(x * 2) / 2;
  grid.position.set(cell(followed.x), 0.001, cell(followed.z));
  floor.position.set(cell(followed.x), 0, cell(followed.z));
  sun.target.position.set(pelvis.x, 0, pelvis.z);
  sun.position.copy(sun.target.position).add(SUN_OFFSET);
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
  snapCamera = true;  // a jump in time: the camera jumps with the dancer
  if (internalStart !== null) internalStart = performance.now();
}

scrub.max = state.duration;
playButton.addEventListener('click', () => setPlaying(!state.playing));
styleButton.addEventListener('click', () => {
  setStyle(state.style === 'character' ? 'stick' : 'character');
  styleButton.blur();
});
scrub.addEventListener('input', () => seek(Number(scrub.value)));
speed.addEventListener('change', () => { audio.playbackRate = Number(speed.value); });
audio.addEventListener('ended', () => setPlaying(false));
window.addEventListener('keydown', (event) => {
  if (event.code === 'Space' && event.target.tagName !== 'SELECT') {
    event.preventDefault();
    setPlaying(!state.playing);
  } else if (event.code === 'KeyS' && event.target.tagName !== 'SELECT') {
    setStyle(state.style === 'character' ? 'stick' : 'character');
  }
});
pose(0);
setStyle('character');
renderer.setAnimationLoop(tick);
"""
