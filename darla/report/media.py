"""Agent videos for the report: one animated GIF per method, its episodes side by side.

Stage 3 records one episode per domain of each method's first seed (``transfer/videos/
<method>.npz``: every frame, the return, the scene factors); this module lays the domains out
side by side, each under a caption, and encodes a looping GIF no larger than a byte budget: past
it, every other frame is dropped (each shown twice as long) until the GIF fits, so a longer
episode or more domains cost frame rate, never the bound.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

#: Every GIF of one report together stays under this many bytes (before base64).
VIDEO_BUDGET_BYTES = 4 * 2**20
#: One method's GIF never exceeds this, however few methods share the budget.
VIDEO_MAX_BYTES = 1 * 2**20
#: Panels are upscaled (nearest) to at least this height in pixels.
PANEL_MIN_PX = 128
#: Frame time of the env's own frame rate, before any frame is dropped.
FRAME_MS = 100


def _caption(width: int, lines: Sequence[str], height: int) -> np.ndarray:
    import cv2

    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(strip, text, (3, 12 + 13 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (20, 20, 20), 1, cv2.LINE_AA)
    return strip


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to what fits ``width`` pixels at the caption's font (about 6 px a character)."""
    n = max(4, (width - 6) // 6)
    return text if len(text) <= n else text[: n - 2] + ".."


def compose(panels: Sequence[tuple[str, np.ndarray]]) -> list[np.ndarray]:
    """Frames of the side-by-side video: ``panels`` is ``[(caption, (T_i, H, W, 3) uint8)]``, the
    caption two lines at most ("\\n"), ASCII (cv2's font has no other glyphs).

    A panel whose episode ended early holds its last frame, captioned "(ended)".
    """
    import cv2

    h = panels[0][1].shape[1]
    f = max(1, -(-PANEL_MIN_PX // h))
    n = max(len(frames) for _, frames in panels)
    out = []
    for t in range(n):
        cols = []
        for caption, frames in panels:
            img = frames[min(t, len(frames) - 1)]
            if f > 1:
                img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
            step = f"step {min(t, len(frames) - 1)}" + (" (ended)" if t >= len(frames) else "")
            cap = _caption(img.shape[1], [_fit(line, img.shape[1]) for line in caption.split("\n")] + [step], 44)
            cols.append(np.concatenate([cap, img], axis=0))
            cols.append(np.full((cols[-1].shape[0], 4, 3), 255, dtype=np.uint8))
        out.append(np.concatenate(cols[:-1], axis=1))
    return out


def encode_gif(frames: Sequence[np.ndarray], max_bytes: int = VIDEO_MAX_BYTES) -> tuple[bytes, int]:
    """(GIF bytes ≤ ``max_bytes``, frame stride used): looping, every ``stride``-th frame.

    Raises ValueError when even a single frame does not fit.
    """
    from PIL import Image

    stride = 1
    while True:
        picked = list(frames[::stride])
        if picked[-1] is not frames[-1]:
            picked.append(frames[-1])  # the episode's last frame is always shown
        # one palette for the whole video (the first frame's colours plus the rest's), no dithering
        images = [Image.fromarray(np.ascontiguousarray(f)) for f in picked]
        palette = Image.fromarray(np.concatenate([np.asarray(i) for i in images[:: max(1, len(images) // 8)]], axis=0)).quantize(
            colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        quantised = [i.quantize(palette=palette, dither=Image.Dither.NONE) for i in images]
        buf = io.BytesIO()
        quantised[0].save(buf, format="GIF", save_all=True, append_images=quantised[1:], duration=FRAME_MS * stride, loop=0,
                          optimize=False, disposal=1)
        data = buf.getvalue()
        if len(data) <= max_bytes:
            return data, stride
        if len(picked) <= 2:
            raise ValueError(f"a video frame alone exceeds {max_bytes} bytes")
        stride *= 2
