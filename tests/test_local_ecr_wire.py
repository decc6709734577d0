"""LocalECR on the wire: hand-made requests, oversized bodies and broken connections.

Every request here is built and signed by hand, as no SDK would send it, and
every count is read from the server's side.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.model import ListShape, MapShape, Shape, StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecr_layers.testing import LocalECR, _handler
from ecr_layers.testing._handler import MAX_API_BODY
from ecr_layers.testing._operations import OPERATIONS
from ecr_layers.testing._shapes import service_model

PREFIX = "AmazonEC2ContainerRegistry_V20150921."
# One pool that never keeps a connection open, so that no handler thread lingers
# on a keep-alive connection after a test.
HTTP = urllib3.PoolManager(retries=False, headers={"Connection": "close"})


@pytest.fixture
def ecr() -> Iterator[LocalECR]:
    with LocalECR() as server:
        yield server


def post(ecr: LocalECR, operation: str, body: bytes) -> urllib3.BaseHTTPResponse:
    """Send *body* as *operation*, correctly signed, whatever it contains."""
    url = ecr.endpoint_url + "/"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"X-Amz-Target": PREFIX + operation, "Content-Type": "application/x-amz-json-1.1"},
    )
    credentials = Credentials(ecr.access_key_id, ecr.secret_access_key)
    SigV4Auth(credentials, "ecr", ecr.region_name).add_auth(request)
    return HTTP.request("POST", url, body=body, headers=dict(request.headers.items()))


def error_code(response: urllib3.BaseHTTPResponse) -> str:
    return str(json.loads(response.data)["__type"])


def connect(ecr: LocalECR) -> socket.socket:
    host, port = ecr.endpoint_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (RST), as a killed client or a middlebox does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@contextlib.contextmanager
def handlers_finish(timeout: float = 10.0) -> Iterator[None]:
    """On exit, wait until every LocalECR connection thread started inside is done."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + timeout
    while any("process_request_thread" in t.name for t in set(threading.enumerate()) - before):
        assert time.monotonic() < deadline, "a LocalECR connection thread is still running"
        time.sleep(0.01)


# -- the operations table -------------------------------------------------------------


def test_every_served_operation_is_an_ecr_operation() -> None:
    assert OPERATIONS
    assert set(OPERATIONS) <= set(service_model().operation_names)


def test_the_table_is_what_is_served(ecr: LocalECR) -> None:
    ecr.create_repository("team/app")
    for operation in OPERATIONS:
        answer = post(ecr, operation, b'{"repositoryName": "team/app"}')
        assert answer.status in (200, 400), operation
        if answer.status == 400:
            assert error_code(answer) != "UnknownOperationException", operation
    # An ECR operation that is not in the table is not served.
    unserved = sorted(set(service_model().operation_names) - set(OPERATIONS))
    assert "DeleteRepository" in unserved
    for operation in unserved[:5]:
        answer = post(ecr, operation, b"{}")
        assert (answer.status, error_code(answer)) == (400, "UnknownOperationException")
    assert ecr.stats.count(status=500) == 0


# -- bodies that are not what the model says ------------------------------------------


@pytest.mark.usefixtures("no_collection_at_the_recursion_limit")
@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1]", b'"text"', b"\xff\xfe", b"[" * 100_000, b'{"a": ' * 50_000],
    ids=["syntax", "array", "string", "not-utf8", "nested-arrays", "nested-objects"],
)
def test_malformed_json_is_a_serialization_exception(ecr: LocalECR, body: bytes) -> None:
    answer = post(ecr, "DescribeRepositories", body)
    assert answer.status == 400
    assert error_code(answer) == "SerializationException"
    assert ecr.stats.count("DescribeRepositories", status=400) == 1
    assert ecr.stats.count() == 1


@pytest.mark.parametrize(
    ("operation", "request_", "code"),
    [
        ("UploadLayerPart", {"layerPartBlob": 5}, "SerializationException"),
        ("UploadLayerPart", {"layerPartBlob": "not base64!"}, "SerializationException"),
        ("UploadLayerPart", {"layerPartBlob": "\x80"}, "SerializationException"),
        ("UploadLayerPart", {"partFirstByte": True}, "SerializationException"),
        ("UploadLayerPart", {"partFirstByte": 1.5}, "SerializationException"),
        ("BatchGetImage", {"imageIds": [5]}, "SerializationException"),
        ("DescribeRepositories", {"repositoryNames": [["x"]]}, "SerializationException"),
        ("CompleteLayerUpload", {"uploadId": [1]}, "SerializationException"),
        ("GetDownloadUrlForLayer", {"layerDigest": {}}, "SerializationException"),
        ("PutImage", {"imageTag": 5}, "SerializationException"),
        ("GetDownloadUrlForLayer", {"layerDigest": None}, "InvalidParameterException"),
        ("UploadLayerPart", {"uploadId": None}, "InvalidParameterException"),
    ],
)
def test_members_of_the_wrong_type_are_refused(
    ecr: LocalECR, operation: str, request_: dict[str, Any], code: str
) -> None:
    valid: dict[str, Any] = {
        "repositoryName": "team/app",
        "uploadId": "00000000-0000-0000-0000-000000000000",
        "partFirstByte": 0,
        "partLastByte": 0,
        "layerPartBlob": "eA==",
        "layerDigest": "sha256:" + "0" * 64,
        "layerDigests": ["sha256:" + "0" * 64],
        "imageIds": [{"imageTag": "v1"}],
        "imageManifest": "{}",
    }
    ecr.create_repository("team/app")
    shape = service_model().operation_model(operation).input_shape
    assert shape is not None
    body = {k: v for k, v in valid.items() if k in shape.members} | request_
    answer = post(ecr, operation, json.dumps(body).encode())
    assert (answer.status, error_code(answer)) == (400, code)
    # The message names the member at fault.
    [member] = request_
    assert f"'{member}" in json.loads(answer.data)["message"]
    assert ecr.stats.count(operation, status=400) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# Strings that mean something to LocalECR, so that well-typed requests get past lookups.
meaningful = st.sampled_from(
    ["team/app", "v1", "sha256:" + "0" * 64, "123456789012", '{"config": {}, "layers": []}']
)


def well_typed(shape: Shape) -> st.SearchStrategy[Any]:
    """Values of *shape*'s wire type, as an SDK would send them."""
    if isinstance(shape, StructureShape):
        members = {name: well_typed(member) for name, member in shape.members.items()}
        return st.fixed_dictionaries({}, optional=members)
    if isinstance(shape, ListShape):
        return st.lists(well_typed(shape.member), max_size=3)
    if isinstance(shape, MapShape):
        return st.dictionaries(st.text(max_size=5), well_typed(shape.value), max_size=2)
    return {
        "string": meaningful | st.text(max_size=8),
        "integer": st.integers(-2, 10),
        "long": st.integers(-2, 10),
        "boolean": st.booleans(),
        "blob": st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()),
    }.get(shape.type_name, json_values)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A served operation and a request for it: well-typed, or with any JSON in its members."""
    operation = draw(st.sampled_from(sorted(OPERATIONS)))
    shape = service_model().operation_model(operation).input_shape
    assert shape is not None
    anything = st.dictionaries(
        st.sampled_from(sorted(shape.members)) | st.text(max_size=5),
        json_values | meaningful,
        max_size=4,
    )
    return operation, draw(well_typed(shape) | anything)


def test_no_request_crashes_an_operation(caplog: pytest.LogCaptureFixture) -> None:
    with LocalECR() as ecr:
        ecr.push_image("team/app", [b"layer"], tag="v1")

        @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(requests())
        def check(case: tuple[str, dict[str, Any]]) -> None:
            operation, request = case
            answer = post(ecr, operation, json.dumps(request).encode())
            # An answer, with an error code when it is an error; never a crash.
            assert answer.status in (200, 400), (answer.status, answer.data)
            if answer.status == 400:
                assert error_code(answer) != "UnknownOperationException"

        check()
        assert ecr.stats.count(status=500) == 0
    assert not [r for r in caplog.records if r.name.startswith("ecr_layers.testing")]


# -- bodies that are too big, or never come -------------------------------------------


def test_an_over_limit_body_is_refused_without_being_read(ecr: LocalECR) -> None:
    sock = connect(ecr)
    with sock:
        # Declares one byte over the limit and sends none of it: an answer can only
        # come from refusing on the header alone.
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: localecr\r\nX-Amz-Target: {PREFIX}UploadLayerPart\r\n"
            f"Content-Length: {MAX_API_BODY + 1}\r\n\r\n".encode()
        )
        started = time.monotonic()
        answer = read_all(sock)  # to the end: the server closes the connection
    assert time.monotonic() - started < 5
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nConnection: close" in head
    error = json.loads(body)
    assert error["__type"] == "RequestEntityTooLargeException"
    assert str(MAX_API_BODY) in error["message"]
    assert ecr.stats.count("UploadLayerPart", status=413) == 1
    assert ecr.stats.count() == 1


def test_a_client_sees_the_refusal_of_an_over_limit_part(ecr: LocalECR) -> None:
    client = ecr.botocore_client()
    client.create_repository(repositoryName="team/app")
    upload = client.initiate_layer_upload(repositoryName="team/app")["uploadId"]
    part = os.urandom(MAX_API_BODY * 3 // 4)  # over the limit once in base64
    with pytest.raises(ClientError) as info:
        client.upload_layer_part(
            repositoryName="team/app",
            uploadId=upload,
            partFirstByte=0,
            partLastByte=len(part) - 1,
            layerPartBlob=part,
        )
    assert info.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert ecr.stats.count("UploadLayerPart") == ecr.stats.count("UploadLayerPart", status=413) == 1


def test_expect_100_continue_is_refused_before_the_body_is_sent(ecr: LocalECR) -> None:
    with connect(ecr) as sock:
        sock.sendall(
            f"POST / HTTP/1.1\r\nHost: localecr\r\nX-Amz-Target: {PREFIX}UploadLayerPart\r\n"
            f"Expect: 100-continue\r\nContent-Length: {MAX_API_BODY + 1}\r\n\r\n".encode()
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer
    assert ecr.stats.count("UploadLayerPart", status=413) == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Transfer-Encoding: chunked\r\n", 411),
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: ten\r\n", 400),
        ("Content-Length: 1\r\nContent-Length: 2\r\n", 400),
    ],
    ids=["chunked", "negative", "not-a-number", "two-lengths"],
)
def test_an_unreadable_length_is_refused(ecr: LocalECR, headers: str, status: int) -> None:
    with connect(ecr) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: localecr\r\n{headers}\r\n".encode())
        answer = read_all(sock)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert ecr.stats.count(status=status) == 1


# -- connections that break --------------------------------------------------------------


def test_clients_that_reset_or_stall_leave_no_traceback(
    ecr: LocalECR,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [digest] = ecr.push_image("team/app", [os.urandom(8 * 1024 * 1024)])
    url = ecr.client().get_layer_url("team/app", digest).download_url
    path = url.removeprefix(ecr.endpoint_url)
    monkeypatch.setattr(_handler.Handler, "timeout", 0.3)
    capfd.readouterr()

    def broken(request: bytes, *, read: bool = False) -> socket.socket:
        sock = connect(ecr)
        sock.sendall(request)
        if read:
            sock.recv(1000)
        return sock

    with handlers_finish():
        # Reset mid-body, mid-headers and mid-download.
        reset(broken(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"))
        reset(broken(b"POST / HTTP/1.1\r\nHost: x\r\nContent-"))
        reset(broken(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), read=True))
        # Stop sending mid-body until the server's timeout, which closes the connection.
        with broken(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{") as stalled:
            stalled.settimeout(10)
            assert stalled.recv(1) == b""
        assert HTTP.request("GET", url).status == 200  # still serving
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records if r.name.startswith("ecr_layers.testing")]
    # The download and the URL lookup were answered; the requests without a body were not.
    assert ecr.stats.count() == 1
    assert ecr.stats.blob_count() == 2


def test_other_failures_are_answered_and_logged(
    ecr: LocalECR, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> object:
        raise RuntimeError("a bug in LocalECR")

    monkeypatch.setattr(_handler, "read_request", broken)
    with caplog.at_level(logging.ERROR, logger="ecr_layers.testing"), handlers_finish():
        answer = post(ecr, "DescribeRepositories", b"{}")
        assert (answer.status, error_code(answer)) == (500, "ServerException")
        # Outside an operation: no answer is possible, but the error is still shown.
        monkeypatch.setattr(ecr, "_check_url", broken)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            HTTP.request("GET", ecr.endpoint_url + "/blobs/sha256:00/team/app")
    logged = [r for r in caplog.records if r.name == "ecr_layers.testing"]
    assert len(logged) == 2
    for record in logged:
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
    assert ecr.stats.count("DescribeRepositories", status=500) == 1
