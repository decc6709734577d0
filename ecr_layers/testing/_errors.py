"""
The error an operation answers with: its ``__type`` code, message and HTTP status.

A module of its own because the registry, the manifest reader and the request
reader all raise it, and none of them should import another to do so.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error response: the ``__type`` code, its message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status


def invalid_parameter(message: str) -> ServiceError:
    """Return the service's HTTP 400 ``InvalidParameterException`` with *message*."""
    return ServiceError("InvalidParameterException", message)


class RegistryError(Exception):
    """A registry API (``/v2/``) error: the distribution spec's code, message and status."""

    def __init__(self, code: str, message: str, status: int, detail: object = None) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status
        self.detail = detail
