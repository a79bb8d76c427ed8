"""HTML pieces of darla's self-contained reports: escaping, embedded images, the shared CSS.

Every picture is embedded as base64, so a report file can be mailed or archived alone, and
every string that comes from a config, a name or a file goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def fig_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_b64(path_or_fig: Any, dpi: int = 110) -> str:
    """A PNG file, or a matplotlib figure (closed), as base64."""
    if isinstance(path_or_fig, (str, Path)):
        return b64(Path(path_or_fig).read_bytes())
    return b64(fig_png(path_or_fig, dpi))


def rgb_png_b64(image: np.ndarray) -> str:
    """An RGB uint8 (H, W, 3) array as a base64 PNG."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return b64(buf.tobytes())


def img(data_b64: str, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data_b64}"{w}>'


def base_css(max_width_px: int, cell_font_em: str) -> str:
    """The page, headings and tables every darla report shares; each report appends its own rules."""
    return f"""
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:{max_width_px}px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.5em}} h2{{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}}
table{{border-collapse:collapse;margin:.5em 0}} td,th{{border:1px solid #ccc;padding:.3em .6em;font-size:{cell_font_em}em;text-align:left}}
"""
