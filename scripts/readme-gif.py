"""docs/demo-dance.gif, the README's first picture: a few seconds of a demo render.

Run after the demo (``snakemake --cores 2``)::

    .venv/bin/python scripts/readme-gif.py [results/renders/motiongraph/vibe-ace.mp4]

Takes 4 s of the MP4 from 9 s in, every third frame (10 fps), crops the dancer's square
from the 1280x720 frame, shrinks it to 256x256 and writes a GIF on one shared 32-colour
palette (~300 kB: small enough to commit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
START_S, SECONDS, FPS, STEP, SIDE = 9.0, 4.0, 30, 3, 256


def main() -> None:
    source = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else REPO / "results/renders/motiongraph/vibe-ace.mp4"
    )
    first, last = round(START_S * FPS), round((START_S + SECONDS) * FPS)
    frames = []
    for index, frame in enumerate(iio.imiter(source, plugin="FFMPEG")):
        if index >= last:
            break
        if index >= first and (index - first) % STEP == 0:
            height, width = frame.shape[:2]
            left = (width - height) // 2
            square = Image.fromarray(frame[:, left : left + height])
            frames.append(square.resize((SIDE, SIDE), Image.LANCZOS))
    palette = frames[len(frames) // 2].quantize(colors=32, method=Image.Quantize.FASTOCTREE)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    out = REPO / "docs" / "demo-dance.gif"
    frames[0].save(
        out, save_all=True, append_images=frames[1:], duration=1000 * STEP // FPS, loop=0
    )
    print(f"{out}: {len(frames)} frames, {out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
