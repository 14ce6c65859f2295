"""Matplotlib figures inlined into report.html as PNG (no pyplot: no global backend)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

__all__ = ["figure", "img"]


def figure(w: float, h: float) -> Any:
    """A figure of ``w`` x ``h`` inches, laid out to fit."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in any process

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def img(fig: Any, alt: str) -> str:
    """The figure as an inline ``<img>`` (base64 PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt=\"{html.escape(alt, quote=True)}\" src=\"data:image/png;base64,{data}\">"
