"""QR codes as inline SVG (segno), so enrolment pages need no image files or JavaScript."""

from __future__ import annotations

import io


def qr_svg(data: str, *, title: str = "QR code") -> str:
    """``data`` as an SVG document; ``title`` is its tooltip (in the page's language on a page)."""
    # Imported on the first enrolment, not at start: a worker that never shows a QR code never holds segno and the
    # XML and URL modules it brings (about 1 MiB).
    import segno

    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False, svgns=True, title=title)
    return buffer.getvalue().decode("utf-8")
