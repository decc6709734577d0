"""
The S3 wire format LocalECR's download host speaks: ``Range`` headers and XML errors.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

#: A single ``bytes=`` range: the only kind S3 honours (others get the whole object).
# At most 20 digits a bound: a longer one is no range (and int() of thousands raises).
RANGE = re.compile(r"bytes=(\d{0,20})-(\d{0,20})")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return [start, end) for a single ``bytes=`` range, or None if unsatisfiable."""
    match = RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:
        suffix = int(match[2])
        return (max(0, size - suffix), size) if suffix else None
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return None
    return (start, end)


def error_body(code: str, message: str, request_id: str) -> bytes:
    """Return S3's XML error document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId></Error>"
    ).encode()
