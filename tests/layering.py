"""Layers built entry by entry, hostile ones included, for the rootfs tests."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from typing import Any

from ecr_layers.testing import Layer


def entry(name: str, kind: bytes = tarfile.REGTYPE, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def layer(*items: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes], compress: bool = True) -> Layer:
    """A gzip'd (or plain) tar of *items*: a TarInfo, or a (file TarInfo, content) pair."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in items:
            if isinstance(item, tuple):
                info, data = item
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(item)
    raw = buffer.getvalue()
    data = gzip.compress(raw, mtime=0) if compress else raw
    names = tuple(i[0].name if isinstance(i, tuple) else i.name for i in items)
    return Layer(data, _digest(data), _digest(raw), names)


def file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, mode=mode), data


def dir_(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    return entry(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> tarfile.TarInfo:
    return entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> tarfile.TarInfo:
    return entry(name, tarfile.LNKTYPE, linkname=target)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: str) -> dict[str, tuple[str, object, int]]:
    """Every path under *root*: (kind, content or link target, permission bits)."""
    import os
    import stat

    found: dict[str, tuple[str, object, int]] = {}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(here, name)
            rel = os.path.relpath(path, root)
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path), 0)
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", None, mode)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", f.read(), mode)
    return found
