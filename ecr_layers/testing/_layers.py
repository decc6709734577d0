"""
Layer blobs for seeding: deterministic gzip'd tar archives, and random ones of a chosen size.

An image names each layer twice: by the digest of the blob (the ``.tar.gz``, what
``GetDownloadUrlForLayer`` serves) and, in its config's ``rootfs.diff_ids``, by the
digest of the uncompressed tar.  `Layer` carries both, so seeded images are ones a
client can verify end to end.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import struct
import tarfile
import zlib
from collections.abc import Iterable, Mapping

import attrs

_BLOCK = 512  # tar's unit: headers, and file data padded to it
_END = bytes(2 * _BLOCK)  # two zero blocks end an archive
# A gzip member: magic, deflate, no flags, mtime 0 (so the same tar always gives
# the same bytes), then the extra-flags byte, then OS 255 ("unknown": the same on
# every machine, where zlib's own gzip writer records the OS it runs on).
_GZIP_START = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
_GZIP_OS = b"\xff"
_GZIP_OVERHEAD = len(_GZIP_START) + 2 + 8  # + XFL, OS; + CRC-32 and size at the end
# A stored (uncompressed) deflate block: one header byte, LEN and NLEN, then the bytes.
_STORED_HEADER = 5
_STORED_MAX = 0xFFFF


def digest_of(data: bytes) -> str:
    """Return the OCI sha256 digest of *data*."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@attrs.frozen
class Layer:
    """A layer blob (a gzip'd tar archive) and the two digests an image names it by."""

    #: The ``.tar.gz``: what is uploaded, and what a download URL serves.
    data: bytes = attrs.field(repr=False, eq=False)
    #: ``sha256:`` of `data`: the digest in the manifest, and the one to download.
    digest: str
    #: ``sha256:`` of the uncompressed tar: the digest in the config's ``rootfs.diff_ids``.
    diff_id: str
    #: The archive's file names, in archive order.
    files: tuple[str, ...]

    @property
    def size(self) -> int:
        """The blob's size in bytes, as the manifest states it."""
        return len(self.data)

    def __repr__(self) -> str:
        # The bytes can be megabytes; their size says what a reader needs.
        return f"Layer(digest={self.digest!r}, size={self.size}, files={self.files!r})"


def tar_layer(files: Mapping[str, bytes]) -> Layer:
    """Return a layer holding *files* (name -> content), the same bytes for the same files.

    Names are stored sorted, with mtime 0, owner 0:0, mode 0644 and a gzip header
    without a time, so equal inputs give equal digests; the gzip stream is zlib's
    level 9.
    """
    names = sorted(files)
    for name in names:
        _check_name(name)
    tar = b"".join(_tar_pieces((name, bytes(files[name])) for name in names))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(tar) + compressor.flush()
    data = b"".join((_GZIP_START, b"\x02", _GZIP_OS, deflated, _gzip_trailer(tar)))
    return Layer(data, digest_of(data), digest_of(tar), tuple(names))


def random_layer(size: int, *, seed: int | None = None, name: str = "blob.bin") -> Layer:
    """Return a layer of *size* bytes: one file of random (incompressible) bytes.

    The archive is exactly *size* bytes from 1561 bytes up (the smallest, an empty
    file, is 1559 bytes; a smaller *size*, or 1560, gives the next size up).  With
    *seed*, the same seed gives the same layer.  Fast at tens of MiB: the bytes are
    stored in the gzip stream, not compressed (they would not shrink anyway).
    """
    if size < 0:
        raise ValueError(f"size must not be negative, got {size}")
    _check_name(name)
    header = len(_tar_header(name, 0))
    payload_blocks, stored_blocks, extra = _plan(size, header)
    length = payload_blocks * _BLOCK
    # Test data, not secrets: a repeatable generator is the point of *seed*.
    repeatable = random.Random(seed).randbytes if seed is not None else None  # noqa: S311
    payload = repeatable(length) if repeatable else os.urandom(length)
    tar = b"".join((_tar_header(name, length), payload, _END))
    del payload
    data = _stored_gzip(tar, stored_blocks, extra)
    return Layer(data, digest_of(data), digest_of(tar), (name,))


def diff_id_of(blob: bytes) -> str:
    """Return the diff_id a config names *blob* by: the digest of the tar inside a
    gzip'd tar; for anything else, the blob's own digest (what raw test bytes get).
    """
    if blob[:2] == b"\x1f\x8b":
        try:
            tar = gzip.decompress(blob)
        except (OSError, EOFError, zlib.error):
            return digest_of(blob)
        # Every tar header LocalECR or docker writes carries the ustar magic;
        # an empty archive is only the end blocks.
        if tar[257:262] == b"ustar" or (len(tar) >= len(_END) and not tar.strip(b"\0")):
            return digest_of(tar)
    return digest_of(blob)


# -- tar ------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    # A trailing "/" would make the entry read back as a directory.
    if not name or name.endswith("/"):
        raise ValueError(f"a layer's file needs a non-empty name not ending in '/': {name!r}")


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    # TarInfo's defaults are the deterministic ones (mtime 0, uid/gid 0, no owner
    # names); set here so a change of default cannot change a digest.
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _tar_pieces(files: Iterable[tuple[str, bytes]]) -> Iterable[bytes]:
    # Written by hand rather than with TarFile: TarFile pads the archive to a
    # 10 KiB record, which is noise in a layer of a few hundred bytes.
    for name, content in files:
        yield _tar_header(name, len(content))
        yield content
        yield bytes(-len(content) % _BLOCK)
    yield _END


# -- gzip -----------------------------------------------------------------------------


def _gzip_trailer(data: bytes) -> bytes:
    return struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def _stored_gzip(data: bytes, blocks: int, extra: int | None) -> bytes:
    """Return *data* as a gzip member of *blocks* stored deflate blocks.

    With *extra*, the header carries an extra field of that many bytes (FEXTRA):
    the one part of a gzip member whose length is free to the byte, which is what
    lets `random_layer` hit a size exactly.
    """
    view = memoryview(data)
    base, longer = divmod(len(data), blocks)
    if extra is None:
        pieces: list[bytes | memoryview] = [_GZIP_START, b"\x00", _GZIP_OS]
    else:
        # One subfield ("LE", for LocalECR) of zeros when there is room for its
        # 4-byte head; readers skip the field whole, so a shorter one is zeros too.
        field = b"LE" + struct.pack("<H", extra - 4) if extra >= 4 else b""
        flagged = _GZIP_START[:3] + b"\x04" + _GZIP_START[4:]
        pieces = [flagged, b"\x00", _GZIP_OS, struct.pack("<H", extra), field.ljust(extra, b"\0")]
    start = 0
    for index in range(blocks):
        length = base + (index < longer)
        pieces.append(struct.pack("<BHH", index == blocks - 1, length, length ^ 0xFFFF))
        pieces.append(view[start : start + length])
        start += length
    pieces.append(_gzip_trailer(data))
    return b"".join(pieces)


def _plan(size: int, header: int) -> tuple[int, int, int | None]:
    """Return (payload tar blocks, stored deflate blocks, extra field bytes or None)
    for an archive of *size* bytes, with as much payload as fits.

    The archive is ``_GZIP_OVERHEAD + tar + 5 * stored_blocks`` bytes, plus
    ``2 + extra`` with an extra field; the tar is ``header + 512 * payload_blocks
    + 1024``.  Below the smallest archive (an empty file), or 1 byte above it
    (an extra field costs 2 at the least), the next size up.
    """
    target = size
    while True:
        rest = target - _GZIP_OVERHEAD - header - len(_END)
        for payload_blocks in range(max(rest, 0) // _BLOCK, -1, -1):
            tar = header + payload_blocks * _BLOCK + len(_END)
            stored = max(1, -(-tar // _STORED_MAX))
            slack = target - _GZIP_OVERHEAD - tar - _STORED_HEADER * stored
            if slack == 0:
                return payload_blocks, stored, None
            if 2 <= slack <= 2 + 0xFFFF:
                return payload_blocks, stored, slack - 2
        target += 1
