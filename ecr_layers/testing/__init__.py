"""
Test ECR code without AWS: `LocalECR`, a real ECR endpoint on loopback.

Also a pytest plugin (installed with ecr-layers) whose ``local_ecr`` fixture starts
one and points the environment and ecr-layers' default client at it.
"""

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
