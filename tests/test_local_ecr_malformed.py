"""LocalECR answers malformed requests with a 4xx and an error body, and closes cleanly:
it never just drops the connection (each of these dropped it before)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "content_length", [b"9" * 5000, b"-5", b"1e3", b"0x10", b"12, 13", "\u0663".encode()]
)
def test_a_malformed_content_length_is_a_400_with_a_body(
    local_ecr: LocalECR, content_length: bytes
) -> None:
    port = urlsplit(local_ecr.endpoint_url).port
    assert port is not None
    answer = _exchange(
        port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + content_length + b"\r\n\r\n"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Length is not one non-negative integer" in body


def test_a_range_of_thousands_of_digits_is_answered(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x" * 1000])
    with ecr_layers.LayerClient(local_ecr.botocore_client()) as client:
        url = urlsplit(client.get_layer_url("team/app", digest).download_url)
    assert url.port is not None
    answer = _exchange(
        url.port,
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Range: bytes={'9' * 5000}-\r\nConnection: close\r\n\r\n".encode(),
    )
    # Not a range at all, so ignored as HTTP says (S3 does the same): the whole blob.
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"x" * 1000)
