"""The character in an MP4 panel: the skinned body drawn offscreen with OpenGL (moderngl).

Where there is no GPU the context is EGL on Mesa's llvmpipe (Debian: ``libegl1
libgl1-mesa-dri libegl-mesa0``), a multi-threaded software rasteriser. The skinning runs in
the vertex shader (52 bone matrices a frame, from :func:`kakashi.outputs.character.retarget`),
so a frame costs one upload of 3.3 KB, one draw of the body (its decimated copy, 10,702
triangles), one of a coarser copy flattened onto the floor along the light (the shadow),
one procedural floor grid, and one read-back. The picture is rendered upside down and in
BGR order so the read-back is the frame OpenCV and the encoder expect, with no copy.

The camera follows the smoothed pelvis from a little to the dancer's left and above, at the
distance where the dance's tallest pose (95th percentile, raised hands included) fills 95 %
of the frame's height.
"""

from __future__ import annotations

import numpy as np

from kakashi.dance import Dance
from kakashi.errors import MediaError
from kakashi.outputs.character import load_character, retarget
from kakashi.outputs.stage import smooth

_VERTICAL_FOV_DEG = 30.0
_CAMERA_AZIMUTH_DEG = 25.0
_CAMERA_ELEVATION_DEG = 8.0
_FILL = 0.95  # fraction of the frame's height the tallest pose takes
# No multisampling: 4x MSAA took a frame from 16 to 41 CPU ms on llvmpipe (2x: the same),
# which would put the MP4 below 3x realtime on 2 cores; at 720p the edges look fine without.
_SHADOW_CELL = 0.03  # metres: the shadow's mesh resolution (26,756 -> ~4,000 triangles)
_BACKGROUND = (0.110, 0.118, 0.133)  # RGB, the viewer's #1c1e22
_LIGHT = np.array([0.35, 1.0, 0.55]) / np.linalg.norm([0.35, 1.0, 0.55])  # towards the sun

_VERTEX = """
#version 330
uniform mat4 bones[52];
uniform mat4 view_proj;
uniform vec3 light;
uniform bool flatten;
in vec3 in_position;
in vec3 in_normal;
in vec4 in_joints;
in vec4 in_weights;
out vec3 v_normal;
void main() {
    mat4 skin = in_weights.x * bones[int(in_joints.x)] + in_weights.y * bones[int(in_joints.y)]
              + in_weights.z * bones[int(in_joints.z)] + in_weights.w * bones[int(in_joints.w)];
    vec4 world = skin * vec4(in_position, 1.0);
    v_normal = mat3(skin) * in_normal;
    if (flatten) {  // the shadow: along the light onto the floor (just above it)
        world.xyz -= max(world.y - 0.002, 0.0) / light.y * light;
    }
    gl_Position = view_proj * world;
}
"""
_FRAGMENT = """
#version 330
uniform vec3 light;
uniform bool flatten;
uniform vec3 shadow;
in vec3 v_normal;
out vec4 colour;
void main() {
    vec3 rgb = shadow;
    if (!flatten) {
        vec3 n = normalize(v_normal);
        float sun = max(dot(n, light), 0.0);
        float sky = 0.5 + 0.5 * n.y;
        vec3 skin = vec3(0.80, 0.76, 0.72);
        rgb = skin * (0.30 + 0.35 * sky + 0.55 * sun);
    }
    colour = vec4(rgb.bgr, 1.0);  // BGR: the frame goes to OpenCV and the encoder as is
}
"""
_FLOOR_VERTEX = """
#version 330
uniform mat4 view_proj;
uniform vec2 centre;
in vec2 in_xz;
out vec2 v_xz;
void main() {
    v_xz = centre + in_xz;
    gl_Position = view_proj * vec4(v_xz.x, 0.0, v_xz.y, 1.0);
}
"""
_FLOOR_FRAGMENT = """
#version 330
uniform vec2 centre;
uniform vec3 background;
in vec2 v_xz;
out vec4 colour;
void main() {
    vec2 cell = v_xz / 0.5;  // half-metre grid, fixed to the floor
    vec2 width = fwidth(cell);
    vec2 line = abs(fract(cell - 0.5) - 0.5) / width;
    float grid = 1.0 - min(min(line.x, line.y), 1.0);
    vec3 floor_rgb = mix(vec3(0.26, 0.28, 0.31), vec3(0.40, 0.43, 0.47), grid * 0.7);
    float fade = smoothstep(1.5, 4.5, distance(v_xz, centre));
    colour = vec4(mix(floor_rgb, background, fade).bgr, 1.0);
}
"""


def _coarse_triangles(character, cell: float) -> np.ndarray:
    """The body's triangles with vertices snapped to one per ``cell``-metre cube at rest
    (each cube's first vertex, skinned as itself): a coarse copy for the shadow, where
    detail is lost anyway; degenerate triangles dropped."""
    keys = np.floor(character.positions / cell).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    snapped = first[inverse.reshape(-1)][character.triangles.astype(np.int64)]
    keep = (
        (snapped[:, 0] != snapped[:, 1])
        & (snapped[:, 1] != snapped[:, 2])
        & (snapped[:, 0] != snapped[:, 2])
    )
    return snapped[keep].astype("u4")


def _perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1 / np.tan(np.radians(fov_deg) / 2)
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, -f, 0, 0],  # upside down: the read-back's first row is the picture's top
            [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
            [0, 0, -1, 0],
        ]
    )


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """View matrices (N, 4, 4) for eyes and targets (N, 3), y up."""
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(right, forward)
    view = np.zeros((len(eye), 4, 4))
    view[:, 0, :3], view[:, 1, :3], view[:, 2, :3] = right, up, -forward
    view[:, :3, 3] = -np.einsum("nij,nj->ni", view[:, :3, :3], eye)
    view[:, 3, 3] = 1
    return view


def _context():
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as error:  # no EGL library or driver: say what to install
        raise MediaError(
            f"cannot open an OpenGL context for the character render ({error}); install "
            "Mesa's EGL (apt-get install libegl1 libgl1-mesa-dri libegl-mesa0) or render "
            "the stick figure (--style stick)"
        ) from None


class CharacterView:
    """One panel of the MP4: the dance on the character, frame by frame (see module doc)."""

    def __init__(self, dance: Dance, frames: int, width: int, height: int) -> None:
        self.width, self.height = width, height
        character = load_character()
        motion = retarget(dance, character)
        order = np.minimum(np.arange(frames), len(dance) - 1)  # the last pose holds
        rotations, heads = motion.rotations[order], motion.heads[order]
        bones = np.zeros((frames, len(character.bones), 4, 4))
        bones[..., :3, :3] = rotations
        bones[..., :3, 3] = heads - np.einsum("tbij,bj->tbi", rotations, character.heads)
        bones[..., 3, 3] = 1
        # Column-major for GLSL: each matrix transposed.
        self.bones = np.ascontiguousarray(np.swapaxes(bones, -1, -2), dtype="f4")

        # Camera: frame the tallest pose; follow the pelvis (smoothed, so it never shakes).
        tops = heads[:, :, 1].max(axis=1) + 0.12  # the head's top and raised hands
        span = max(float(np.percentile(tops, 95)), 1.0)
        target = smooth(heads[:, 0, :], sigma_frames=0.6 * dance.fps)
        target[:, 1] = 0.5 * span
        azimuth, elevation = np.radians([_CAMERA_AZIMUTH_DEG, _CAMERA_ELEVATION_DEG])
        towards = np.array(
            [
                np.sin(azimuth) * np.cos(elevation),
                np.sin(elevation),
                np.cos(azimuth) * np.cos(elevation),
            ]
        )
        tan_half = np.tan(np.radians(_VERTICAL_FOV_DEG) / 2)
        distance = span / (2 * tan_half * _FILL) + 0.25  # the near side of the body is closer
        eye = target + distance * towards
        projection = _perspective(_VERTICAL_FOV_DEG, width / height, 0.1, 60.0)
        view_proj = projection @ _look_at(eye, target)
        self.view_proj = np.ascontiguousarray(np.swapaxes(view_proj, -1, -2), dtype="f4")
        self.centre = np.ascontiguousarray(target[:, [0, 2]], dtype="f4")

        self.ctx = _context()
        ctx = self.ctx
        self.body = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.floor = ctx.program(vertex_shader=_FLOOR_VERTEX, fragment_shader=_FLOOR_FRAGMENT)
        self.body["light"].value = tuple(_LIGHT)
        self.body["shadow"].value = (0.16, 0.17, 0.19)
        self.floor["background"].value = _BACKGROUND
        vertices = np.hstack(
            [
                character.positions,
                character.normals,
                character.joints.astype("f4"),
                character.weights,
            ]
        ).astype("f4")
        self.vbo = ctx.buffer(vertices.tobytes())
        # The decimated copy of the mesh (10,702 triangles, visually the same at 720p): the
        # body took 10.3 CPU ms a frame with all 26,756, 7.5 with these.
        self.ibo = ctx.buffer(character.lod_triangles.astype("u4").tobytes())
        self.shadow_ibo = ctx.buffer(_coarse_triangles(character, _SHADOW_CELL).tobytes())
        self.mesh = ctx.vertex_array(
            self.body,
            [(self.vbo, "3f 3f 4f 4f", "in_position", "in_normal", "in_joints", "in_weights")],
            index_buffer=self.ibo,
            index_element_size=4,
        )
        self.shadow_mesh = ctx.vertex_array(
            self.body,
            [(self.vbo, "3f 3f 4f 4f", "in_position", "in_normal", "in_joints", "in_weights")],
            index_buffer=self.shadow_ibo,
            index_element_size=4,
        )
        quad = np.array([[-8, -8], [8, -8], [-8, 8], [8, 8]], dtype="f4")
        self.quad = ctx.buffer(quad.tobytes())
        self.ground = ctx.vertex_array(self.floor, [(self.quad, "2f", "in_xz")])
        self.fbo = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer((width, height), 3)],
            depth_attachment=ctx.depth_renderbuffer((width, height)),
        )

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        """Render frame ``frame`` into ``canvas`` (height, width, 3) BGR uint8."""
        import moderngl

        ctx = self.ctx
        self.fbo.use()
        ctx.clear(*_BACKGROUND[::-1], 1.0)  # BGR
        ctx.enable(moderngl.DEPTH_TEST)
        # The picture is upside down (see _perspective), which turns counter-clockwise
        # front faces clockwise. Culling the back faces halves llvmpipe's triangle work (the
        # body went from 11 to 6.5 CPU ms a frame); the shadow's front faces still cover
        # its whole silhouette.
        ctx.front_face = "cw"
        view_proj = self.view_proj[frame].tobytes()
        self.floor["view_proj"].write(view_proj)
        self.floor["centre"].value = tuple(self.centre[frame])
        self.ground.render(moderngl.TRIANGLE_STRIP)
        ctx.enable(moderngl.CULL_FACE)
        self.body["view_proj"].write(view_proj)
        self.body["bones"].write(self.bones[frame].tobytes())
        self.body["flatten"].value = True
        self.shadow_mesh.render(moderngl.TRIANGLES)
        self.body["flatten"].value = False
        self.mesh.render(moderngl.TRIANGLES)
        ctx.disable(moderngl.CULL_FACE)
        pixels = self.fbo.read(components=3, alignment=1)
        canvas[:] = np.frombuffer(pixels, np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        self.ctx.release()
