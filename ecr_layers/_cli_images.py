"""
The command line's image commands: ``image`` (show a manifest), ``pull`` (into an
OCI image layout), ``export`` (a root filesystem) and ``cat`` (one file).  Errors
and exit statuses are `ecr_layers._cli`'s, as for the rest.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._cli_client import open_client, progress_bar
from ._cli_output import printable
from ._manifest import Image


def image(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        found = client.get_image(
            args.repository, args.reference, registry_id=args.registry_id, platform=args.platform
        )
    if args.json:
        print(json.dumps(_as_json(found), indent=2))
        return 0
    for label, value in _rows(found):
        print(f"{label:<10} {printable(value)}")
    return 0


def _rows(found: Image) -> list[tuple[str, str]]:
    rows = [
        ("image", f"{found.repository_name}:{found.reference}"),
        ("digest", found.digest),
        ("type", found.media_type),
    ]
    if found.index_digest is not None:
        rows.append(("platform", f"{found.platform} (chosen from index {found.index_digest})"))
        rows.append(("offers", ", ".join(found.platforms)))
    rows.append(("config", f"{found.config.digest}  {_size(found.config.size)}"))
    for number, layer in enumerate(found.layers, 1):
        rows.append((f"layer {number}", f"{layer.digest}  {_size(layer.size)}"))
    rows.append(("total", f"{_size(found.total_size)} in {len(found.layers)} layers and config"))
    return rows


def _as_json(found: Image) -> dict[str, object]:
    def blob(d: object) -> dict[str, object]:
        return {"mediaType": d.media_type, "digest": d.digest, "size": d.size}  # type: ignore[attr-defined]

    return {
        "repository": found.repository_name,
        "registryId": found.registry_id,
        "reference": found.reference,
        "digest": found.digest,
        "mediaType": found.media_type,
        "platform": found.platform,
        "indexDigest": found.index_digest,
        "platforms": list(found.platforms),
        "config": blob(found.config),
        "layers": [blob(layer) for layer in found.layers],
        "totalSize": found.total_size,
    }


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover


def pull(args: argparse.Namespace) -> int:
    with open_client(args) as client, progress_bar(args) as progress:
        found = client.pull_image(
            args.repository,
            args.reference,
            args.output,
            registry_id=args.registry_id,
            platform=args.platform,
            max_parallel=args.parallel,
            progress=progress,
        )
    # What skopeo, podman and buildah take for this image: oci:DIR:REFERENCE.
    print(printable(f"{found.digest} oci:{args.output}:{found.reference}"))
    return 0


def export(args: argparse.Namespace) -> int:
    with open_client(args) as client, progress_bar(args) as progress:
        result = client.export_rootfs(
            args.repository,
            args.reference,
            args.directory,
            registry_id=args.registry_id,
            platform=args.platform,
            progress=progress,
        )
    print(printable(f"{result.image.digest} {result.path}"))
    for skipped in result.skipped:
        print(printable(f"skipped {skipped} (device node or fifo)"), file=sys.stderr)
    return 0


def cat(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        data = client.read_file(
            args.repository,
            args.reference,
            args.path,
            registry_id=args.registry_id,
            platform=args.platform,
        )
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0
