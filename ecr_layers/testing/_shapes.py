"""
A request body read against its operation's input shape, as the service's deserializer does.

Malformed JSON and members of the wrong type are ``SerializationException``, a
missing required member ``InvalidParameterException`` (both HTTP 400), so an
operation only ever sees the types the botocore model promises: a hand-made
request gets an error response, never a crashed handler and a dropped connection.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from botocore.model import (
    ListShape,
    MapShape,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

from ._errors import ServiceError

_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


@functools.cache
def service_model() -> ServiceModel:
    """Return botocore's ECR service model, loaded once."""
    import botocore.session

    return botocore.session.get_session().get_service_model("ecr")


@functools.cache
def image_failure_codes() -> tuple[str, ...]:
    """Return the model's ``ImageFailureCode`` values: BatchGetImage's per-image failures."""
    shape = service_model().shape_for("ImageFailureCode")
    return tuple(shape.enum) if isinstance(shape, StringShape) else ()


def read_request(operation: str, body: bytes) -> dict[str, Any]:
    """Return the request *body* of *operation* as Python values (blobs as `bytes`).

    Raise `ServiceError` for what the service's deserializer refuses.
    """
    try:
        # botocore sends "{}" for no parameters; an empty body means the same.
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep
        raise _serialization("The request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _serialization(f"Expected a JSON object as the request body, got {_kind(value)}")
    shape = service_model().operation_model(operation).input_shape
    if shape is None:  # an operation without input: there is nothing to read
        return {}
    return _read_structure(shape, value, "")


def _read(shape: Shape, value: object, path: str) -> Any:  # noqa: PLR0911 (one case per type)
    if isinstance(shape, StructureShape):
        return _read_structure(shape, _expect(value, dict, "an object", path), path)
    if isinstance(shape, ListShape):
        items = _expect(value, list, "an array", path)
        return [_read(shape.member, v, f"{path}[{i}]") for i, v in enumerate(items)]
    if isinstance(shape, MapShape):
        entries = _expect(value, dict, "an object", path)
        return {k: _read(shape.value, v, f"{path}.{k}") for k, v in entries.items()}
    kind = shape.type_name
    if kind == "string":
        return _expect(value, str, "a string", path)
    if kind == "boolean":
        return _expect(value, bool, "a boolean", path)
    if kind in ("integer", "long"):
        return _expect(value, int, "an integer", path)
    if kind in ("float", "double", "timestamp"):
        return _expect(value, (int, float), "a number", path)
    if kind == "blob":
        text = _expect(value, str, "a base64 string", path)
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:  # binascii.Error, or a character outside ASCII
            raise _serialization(f"'{path}' is not valid base64") from None
    return value  # a type no served operation takes


def _read_structure(shape: StructureShape, value: dict[str, Any], path: str) -> dict[str, Any]:
    prefix = f"{path}." if path else ""
    # Unknown members are ignored, and null is the same as absent, as in the service.
    read = {
        name: _read(shape.members[name], member, prefix + name)
        for name, member in value.items()
        if name in shape.members and member is not None
    }
    for name in shape.required_members:
        if name not in read:
            raise ServiceError(
                "InvalidParameterException",
                f"1 validation error detected: Value null at '{prefix}{name}' failed to "
                "satisfy constraint: Member must not be null",
            )
    return read


def _expect(value: object, types: type | tuple[type, ...], expected: str, path: str) -> Any:
    # bool is an int to Python, never to JSON.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise _serialization(f"Expected {expected} at '{path}', got {_kind(value)}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _serialization(message: str) -> ServiceError:
    return ServiceError("SerializationException", message)
