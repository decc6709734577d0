"""
The process-wide default client, and the module-level functions that use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from ._client import LayerClient
from ._exceptions import ECRError
from ._operations import arguments_checker, method_from

P = ParamSpec("P")
T = TypeVar("T")

_default: LayerClient | None = None
_default_lock = threading.Lock()


def default_client() -> LayerClient:
    """Return the process-wide client, creating it on first use (thread-safe)."""
    global _default  # noqa: PLW0603
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = LayerClient()
            client = _default
    return client


def set_default_client(client: LayerClient | None) -> LayerClient | None:
    """Replace the process-wide client; None makes the next call build a fresh one.

    Returns the previous one, so that a test can put it back.
    """
    global _default
    with _default_lock:
        previous, _default = _default, client
    return previous


def _on_default(method: Callable[Concatenate[LayerClient, P], T]) -> Callable[P, T]:
    """*method*, as a module-level function on the process-wide default client."""

    check = arguments_checker(method)
    name = method.__name__

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            # By name: the default client may be a subclass or a test double.
            bound: Callable[P, T] = getattr(default_client(), name)
            return bound(*args, **kwargs)
        except (ECRError, TypeError):
            # Arguments no call could take are the mistake to name first (before a
            # default client that cannot be made), by the public name; else as raised.
            check(args, kwargs)
            raise

    summary = (method.__doc__ or "").strip().split("\n", 1)[0]
    doc = f"{summary}\n\nOn the process-wide default client; see `LayerClient.{method.__name__}`."
    return method_from(call, method, "", doc)


get_layer_url = _on_default(LayerClient.get_layer_url)
get_layer_urls = _on_default(LayerClient.get_layer_urls)
download_layer = _on_default(LayerClient.download_layer)
get_image = _on_default(LayerClient.get_image)
get_config = _on_default(LayerClient.get_config)
open_layer = _on_default(LayerClient.open_layer)
pull_image = _on_default(LayerClient.pull_image)
export_rootfs = _on_default(LayerClient.export_rootfs)
read_file = _on_default(LayerClient.read_file)
