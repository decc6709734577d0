"""
The command line's layer commands: ``url`` (print a pre-signed URL) and ``download``
(download and verify a layer).  Errors and exit statuses are `ecr_layers._cli`'s.
"""

from __future__ import annotations

import argparse
import json

from ._cli_client import open_client, progress_bar
from ._cli_output import without_controls


def url(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        found = client.get_layer_url(args.repository, args.digest, registry_id=args.registry_id)
    if args.json:
        expires = found.expires_at.isoformat() if found.expires_at else None
        doc = {
            "downloadUrl": found.download_url,
            "layerDigest": found.layer_digest,
            "expiresAt": expires,
        }
        print(json.dumps(doc))  # ensure_ascii: control characters come out escaped
    else:
        # Printing the URL, secrets and all, is this command's purpose; only what a
        # terminal would act on is taken out.
        print(without_controls(found.download_url))
    return 0


def download(args: argparse.Namespace) -> int:
    destination = args.output if args.output is not None else "."
    with open_client(args) as client, progress_bar(args) as progress:
        path = client.download_layer(
            args.repository,
            args.digest,
            destination,
            registry_id=args.registry_id,
            progress=progress,
            parallel=args.parallel,
            verify=not args.no_verify,
        )
    if not args.quiet:
        print(path)
    return 0
