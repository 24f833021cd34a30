"""QR codes as inline SVG (segno), so enrolment pages need no image files or JavaScript."""

from __future__ import annotations

import io

import segno


def qr_svg(data: str) -> str:
    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False, svgns=True, title="QR code")
    return buffer.getvalue().decode("utf-8")
