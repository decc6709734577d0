"""
Test ECR code without AWS: `LocalECR`, a real ECR endpoint on loopback.

Also a pytest plugin (installed with ecr-layers) whose ``local_ecr`` fixture starts
one and points the environment and ecr-layers' default client at it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._faults import Failure, Faults, Record, Stats
    from ._layers import Layer, digest_of, random_layer, tar_layer
    from ._push import push_image_via_api, upload_layer_via_api
    from ._seed import SeededImage, SeededManifest
    from ._server import (
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_REGION,
        DEFAULT_REGISTRY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        LocalECR,
    )

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_REGION",
    "DEFAULT_REGISTRY_ID",
    "DEFAULT_SECRET_ACCESS_KEY",
    "Failure",
    "Faults",
    "Layer",
    "LocalECR",
    "Record",
    "SeededImage",
    "SeededManifest",
    "Stats",
    "digest_of",
    "push_image_via_api",
    "random_layer",
    "tar_layer",
    "upload_layer_via_api",
]

# The module each public name lives in, imported on first use rather than here: pytest
# imports this package to load the local_ecr plugin in every test run of every user,
# and most of those runs never start a LocalECR (a test holds the plugin to that).
_HOMES: dict[str, str] = {
    "DEFAULT_ACCESS_KEY_ID": "_server",
    "DEFAULT_REGION": "_server",
    "DEFAULT_REGISTRY_ID": "_server",
    "DEFAULT_SECRET_ACCESS_KEY": "_server",
    "Failure": "_faults",
    "Faults": "_faults",
    "Layer": "_layers",
    "LocalECR": "_server",
    "Record": "_faults",
    "SeededImage": "_seed",
    "SeededManifest": "_seed",
    "Stats": "_faults",
    "digest_of": "_layers",
    "push_image_via_api": "_push",
    "random_layer": "_layers",
    "tar_layer": "_layers",
    "upload_layer_via_api": "_push",
}


# Defined only at run time: a module __getattr__ would make mypy accept any name here.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        try:
            home = _HOMES[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
        globals()[name] = value  # looked up once; later lookups never reach __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
