"""Error mapping, checked with botocore's Stubber (no network)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import botocore.session
import pytest
from botocore.stub import Stubber

import ecr_layers
from ecr_layers._mapping import BY_CODE, BY_FAILURE_CODE, from_image_failure

if TYPE_CHECKING:
    from types_boto3_ecr.client import ECRClient

DIGEST = "sha256:" + "ab" * 32
IMAGE = ecr_layers.ImageRef("team/app", "v1")


@pytest.fixture
def stubbed() -> Iterator[tuple[ecr_layers.LayerClient, Stubber]]:
    client: ECRClient = botocore.session.get_session().create_client(  # type: ignore[assignment]
        "ecr",
        region_name="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="secret",
        config=ecr_layers.BOTOCORE_CONFIG,
    )
    with Stubber(client) as stubber:
        yield (
            ecr_layers.LayerClient(client, retry_policy=ecr_layers.RetryPolicy(attempts=1)),
            stubber,
        )


@pytest.mark.parametrize("operation", ["GetDownloadUrlForLayer", "BatchGetImage"])
def test_every_error_the_model_lists_is_mapped(operation: str) -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    listed = {shape.name for shape in model.operation_model(operation).error_shapes}
    assert listed, "the model lists no errors: the test would prove nothing"
    missing = listed - set(BY_CODE)
    assert not missing, f"errors the model lists but the table lacks: {missing}"


def test_every_image_failure_code_the_model_lists_is_mapped() -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    codes = set(model.shape_for("ImageFailureCode").enum)  # type: ignore[attr-defined]
    assert "ImageNotFound" in codes, "the model lists no codes: the test would prove nothing"
    missing = codes - set(BY_FAILURE_CODE)
    assert not missing, f"failure codes the model lists but the table lacks: {missing}"
    for code, cls in BY_FAILURE_CODE.items():
        error = from_image_failure({"failureCode": code}, IMAGE, "rid")
        assert type(error) is cls
        assert (error.code, error.image, error.request_id) == (code, IMAGE, "rid")


def test_the_readme_errors_table_names_every_image_outcome() -> None:
    """Each BatchGetImage code has a row naming its class and whether it is retried."""
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Errors", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:4] for line in table.splitlines() if line.startswith("| ")]
    expected: dict[str, type[ecr_layers.ECRError]] = {
        **BY_FAILURE_CODE,
        "LimitExceededException": ecr_layers.LimitExceeded,
    }
    expected["UnableToGetUpstreamImageException"] = ecr_layers.UnableToGetUpstreamImage
    for code, cls in expected.items():
        row = next((r for r in rows if f"`{code}`" in r[0]), None)
        assert row is not None, f"no row for {code}"
        assert f"`{cls.__name__}`" in row[1], f"{code}: {row[1]}"
        answer = row[2].strip().split(",")[0]
        assert answer == ("yes" if cls.retryable else "no"), f"{code}: {row[2]}"


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("InvalidParameterException", 400, ecr_layers.InvalidParameter),
        ("LayerInaccessibleException", 400, ecr_layers.LayerInaccessible),
        ("LayersNotFoundException", 400, ecr_layers.LayersNotFound),
        ("RepositoryNotFoundException", 400, ecr_layers.RepositoryNotFound),
        ("ServerException", 500, ecr_layers.ServerError),
        ("UnableToGetUpstreamLayerException", 400, ecr_layers.UnableToGetUpstreamLayer),
        ("AccessDeniedException", 400, ecr_layers.AccessDenied),
        ("ThrottlingException", 400, ecr_layers.Throttled),
        ("ExpiredTokenException", 400, ecr_layers.CredentialsError),
        ("UnrecognizedClientException", 400, ecr_layers.CredentialsError),
        ("SomethingNewException", 400, ecr_layers.UnknownError),
        ("SomethingNewException", 503, ecr_layers.ServerError),
        ("SomethingNewException", 429, ecr_layers.Throttled),
    ],
)
def test_codes_map_to_classes_with_their_context(
    stubbed: tuple[ecr_layers.LayerClient, Stubber], code: str, status: int, cls: type[Exception]
) -> None:
    client, stubber = stubbed
    stubber.add_client_error(
        "get_download_url_for_layer",
        service_error_code=code,
        service_message="it went wrong",
        http_status_code=status,
        response_meta={"RequestId": "req-123"},
    )
    with pytest.raises(ecr_layers.ECRError) as info:
        client.get_layer_url("team/app", DIGEST, registry_id="123456789012")
    exc = info.value
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.request_id, exc.http_status) == (
        code,
        "it went wrong",
        "req-123",
        status,
    )
    assert (exc.repository_name, exc.layer_digest, exc.registry_id, exc.attempts) == (
        "team/app",
        DIGEST,
        "123456789012",
        1,
    )
    assert exc.__cause__ is not None
    assert type(exc.__cause__).__module__.startswith("botocore")


def test_missing_request_id_is_none(stubbed: tuple[ecr_layers.LayerClient, Stubber]) -> None:
    client, stubber = stubbed
    stubber.add_client_error("get_download_url_for_layer", "LayersNotFoundException", "gone")
    with pytest.raises(ecr_layers.LayersNotFound) as info:
        client.get_layer_url("team/app", DIGEST)
    assert info.value.request_id is None


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        ({"layerDigest": DIGEST}, "no downloadUrl"),
        ({"downloadUrl": "", "layerDigest": DIGEST}, "no downloadUrl"),
        (
            {"downloadUrl": "https://x/y", "layerDigest": "sha256:" + "cd" * 32},
            "not the one asked for",
        ),
    ],
)
def test_unusable_200_answers_are_typed(
    stubbed: tuple[ecr_layers.LayerClient, Stubber], response: dict[str, Any], fragment: str
) -> None:
    client, stubber = stubbed
    stubber.add_response("get_download_url_for_layer", response)
    with pytest.raises(ecr_layers.InvalidResponse) as info:
        client.get_layer_url("team/app", DIGEST)
    assert fragment in str(info.value)
    assert "https://x/y" not in str(info.value)


def test_a_good_answer_becomes_a_layer_url(stubbed: tuple[ecr_layers.LayerClient, Stubber]) -> None:
    client, stubber = stubbed
    url = (
        "https://bucket.s3.amazonaws.com/x?X-Amz-Date=20261126T120000Z&X-Amz-Expires=600"
        "&X-Amz-Credential=AKIA%2Fscope&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok"
    )
    stubber.add_response(
        "get_download_url_for_layer",
        {"downloadUrl": url, "layerDigest": DIGEST},
        {"repositoryName": "team/app", "layerDigest": DIGEST},
    )
    result = client.get_layer_url("team/app", DIGEST)
    assert result.download_url == url
    assert result.layer_digest == DIGEST
    assert result.expires_at is not None
    assert result.expires_at.isoformat() == "2026-11-26T12:10:00+00:00"
    text = repr(result)
    for secret in ("deadbeef", "AKIA", "tok"):
        assert secret not in text


def test_invalid_input_is_refused_before_any_request(
    stubbed: tuple[ecr_layers.LayerClient, Stubber],
) -> None:
    client, stubber = stubbed
    # The Stubber has no response queued: a request would fail with a StubResponseError.
    with pytest.raises(ecr_layers.InvalidParameter):
        client.get_layer_url("Team/App", DIGEST)
    stubber.assert_no_pending_responses()


def _subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def test_every_transport_failure_of_the_download_path_has_a_class() -> None:
    # The download path's half of the one error map: every urllib3 error, http.client's
    # and the socket layer's, to a typed error that is never UnknownError.
    import http.client
    import socket

    import urllib3.exceptions

    from ecr_layers import _mapping

    layer = ecr_layers.LayerRef("team/app", DIGEST)
    listed = [
        c
        for c in _subclasses(urllib3.exceptions.HTTPError)
        + _subclasses(http.client.HTTPException)
        + [OSError, ConnectionResetError, socket.timeout, TimeoutError]
        if c.__module__.startswith(("urllib3", "http", "builtins", "socket"))
    ]
    assert len(listed) > 20
    for cls in listed:
        exc = cls.__new__(cls)
        exc.args = ("https://h/k?X-Amz-Signature=SECRETSECRET",)
        error = _mapping.from_transport_error(
            exc, layer, "https://h/k?X-Amz-Signature=SECRETSECRET"
        )
        assert type(error) is not ecr_layers.UnknownError, cls
        assert error.layer == layer
        assert "SECRETSECRET" not in repr(exc.args), cls
    # The classes that a retry cannot help are not retried.
    for cls in (urllib3.exceptions.LocationParseError, urllib3.exceptions.URLSchemeUnknown):
        error = _mapping.from_transport_error(cls("x"), layer, "https://h/")
        assert isinstance(error, ecr_layers.ConfigurationError)
        assert not error.retryable
    timeout = _mapping.from_transport_error(
        urllib3.exceptions.ReadTimeoutError(None, "/k", "read timed out"),  # type: ignore[arg-type]
        layer,
        "https://h/k",
    )
    assert isinstance(timeout, ecr_layers.EndpointTimeout)
    refused = _mapping.from_transport_error(
        urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        layer,
        "https://h/k",
    )
    assert isinstance(refused, ecr_layers.EndpointUnreachable)


def test_only_a_slip_of_botocores_parser_is_an_invalid_response() -> None:
    from botocore import parsers

    from ecr_layers._mapping import from_botocore

    layer = ecr_layers.LayerRef("team/app", "sha256:" + "a" * 64)
    parser = parsers.create_parser("json")
    shape = (
        botocore.session.get_session()
        .get_service_model("ecr")
        .operation_model("BatchGetImage")
        .output_shape
    )
    assert shape is not None
    try:  # a string where the model says a structure, as a hostile service may send
        parser.parse({"body": b'{"images": ["abc"]}', "headers": {}, "status_code": 200}, shape)
    except AttributeError as exc:
        slip: Exception = exc
    mapped = from_botocore(slip, layer)
    assert isinstance(mapped, ecr_layers.InvalidResponse)
    assert mapped.layer == layer
    try:  # the same kind of error from anywhere else is a bug to show, not a bad answer
        "abc".get  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        ours: Exception = exc
    assert from_botocore(ours, layer) is None


# -- the async transport: aiohttp, under aiobotocore's API calls and the async downloads ---

AIOHTTP_URL = "http://127.0.0.1:9/k?X-Amz-Signature=SECRETSECRET"


def aiohttp_errors() -> list[BaseException]:
    """One instance of every exception aiohttp defines for a client to meet: its
    ClientError tree, its HTTP parser's errors (not ClientErrors) and the timeout."""
    import asyncio
    import inspect
    import ssl

    import aiohttp
    import yarl
    from aiohttp import http_exceptions
    from aiohttp.client_reqrep import ConnectionKey, RequestInfo

    key = ConnectionKey(*[None] * len(ConnectionKey._fields))  # type: ignore[arg-type]
    info = RequestInfo(yarl.URL(AIOHTTP_URL), "GET", {}, yarl.URL(AIOHTTP_URL))  # type: ignore[arg-type]

    def build(cls: type[BaseException]) -> BaseException:  # noqa: PLR0911 (one per shape)
        # By the constructor's parameters, so that each is made as aiohttp makes it.
        params = inspect.signature(cls.__init__).parameters
        if "request_info" in params:
            return cls(info, (), status=500, message="bad")  # type: ignore[call-arg]
        if "certificate_error" in params:
            return cls(key, ssl.SSLCertVerificationError("bad certificate"))
        if "connection_key" in params:
            extra = ("/run/sock",) if "path" in params else ()
            return cls(*extra, key, ConnectionRefusedError(111, "refused"))
        if "expected" in params:
            return cls(b"a", b"b", "h", 1)
        if "url" in params:
            return cls(AIOHTTP_URL)
        if "hdr" in params or "line" in params:
            return cls("bad")
        message = params.get("message")
        if message is not None and message.kind is message.KEYWORD_ONLY:
            return cls(message="bad")  # type: ignore[call-arg]
        return cls("bad")

    classes = [
        *_subclasses(aiohttp.ClientError),
        *_subclasses(http_exceptions.HttpProcessingError),
        asyncio.TimeoutError,
    ]
    return [build(cls) for cls in dict.fromkeys(classes)]


def expected_for_aiohttp(exc: BaseException) -> type[ecr_layers.ECRError]:
    """What each should become, by what it means."""
    import aiohttp

    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return ecr_layers.EndpointTimeout
    return ecr_layers.EndpointUnreachable


def test_every_aiohttp_error_of_an_async_api_call_is_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # aiohttp is aiobotocore's transport: whatever it raises under an API call, the
    # caller gets the typed error it means, never aiohttp's class or UnknownError.
    import asyncio

    import aiohttp

    from ecr_layers.aio import AsyncLayerClient

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    errors = aiohttp_errors()
    raised: list[BaseException] = []

    async def fail(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> Any:
        raise raised[-1]

    monkeypatch.setattr(aiohttp.ClientSession, "_request", fail)

    async def main() -> list[tuple[type[BaseException], type[BaseException]]]:
        outcomes: list[tuple[type[BaseException], type[BaseException]]] = []
        async with AsyncLayerClient(
            endpoint_url="http://127.0.0.1:9",
            region_name="us-east-1",
            retry_policy=ecr_layers.RetryPolicy(attempts=1),
        ) as client:
            for exc in errors:
                raised.append(exc)
                with pytest.raises(ecr_layers.ECRError) as caught:
                    await client.get_layer_url("team/app", DIGEST)
                outcomes.append((type(exc), type(caught.value)))
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) == len(errors) > 40
    for exc, (cls, got) in zip(errors, outcomes, strict=True):
        assert got is expected_for_aiohttp(exc), (cls, got)
