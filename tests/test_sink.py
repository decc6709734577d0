"""The sink that hashes and writes a download: bytes in order, whole, in bounded writes."""

from __future__ import annotations

import hashlib
import os
import pathlib
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecr_layers import _sink

# Sizes around the write bound and the buffer size, where an off-by-one would show.
SIZES = st.sampled_from([0, 1, 4095, _sink.WRITE_SIZE - 1, _sink.WRITE_SIZE + 1])
CHUNKS = st.lists(SIZES | st.integers(0, 3 * _sink.WRITE_SIZE), max_size=6)


def _handed(fd: int, handovers: list[list[bytes]]) -> str:
    sink = _sink.Sink(fd, "sha256", None)
    try:
        for n, pieces in enumerate(handovers):
            for piece in pieces:
                if n % 2:  # a parallel download's range, with slack past its length
                    sink.give(bytearray(piece + b"slack"), len(piece), ring=False)
                else:  # a ring buffer, filled in part, as a stream's reads fill them
                    buffer = sink.take()
                    buffer[: len(piece)] = piece
                    sink.give(buffer, len(piece))
        return sink.hexdigest()
    finally:
        sink.close()


@given(handovers=st.lists(CHUNKS, max_size=4), seed=st.binary(min_size=1, max_size=8))
def test_what_is_handed_over_is_hashed_and_written_in_order_in_bounded_writes(
    handovers: list[list[int]], seed: bytes
) -> None:
    pattern = hashlib.sha256(seed).digest()
    data = [
        [(pattern * (size // len(pattern) + 1))[:size] for size in chunk] for chunk in handovers
    ]
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, view: bytes) -> int:
        writes.append(len(view))
        return real_write(fd, view)

    expected = b"".join(b"".join(pieces) for pieces in data)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "write", counting_write)  # the module the sink calls
        path = pathlib.Path(tmp, "layer")
        with path.open("wb") as file:
            digest = _handed(file.fileno(), data)
        assert path.read_bytes() == expected
    assert digest == hashlib.sha256(expected).hexdigest()
    assert all(0 < size <= _sink.WRITE_SIZE for size in writes)
