"""Every public parameter, given None, a wrong type or a wrong shape, is `InvalidParameter`
before any request: one table, through both clients and the module-level functions.

Each row is (callable's name, parameter, the values it refuses).  A value that is
allowed for that parameter (``registry_id=None``) is simply not in its row.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

import ecr_layers
from ecr_layers.testing import LocalECR

DIGEST = "sha256:" + "a" * 64
NOT_A_STR = [None, 5, b"team/app", ["team/app"]]
NOT_AN_OPTIONAL_STR = [5, b"x", ["x"], {"x": 1}]
NOT_A_BOOL = [None, 1, "yes", [True]]
NOT_A_COUNT = [None, 0, -1, 1.5, "4", True, [4]]
NOT_AN_OPTIONAL_COUNT = [0, 17, 1.5, "4", True, [4]]
NOT_CALLABLE = [5, "print", [print]]
NOT_A_PATH = [None, 5, ["/tmp"], b"\0"]

#: The calls, with arguments that would be valid, in order.
CALLS: dict[str, dict[str, Any]] = {
    "get_layer_url": {"repository_name": "team/app", "layer_digest": DIGEST},
    "get_layer_urls": {"repository_name": "team/app", "layer_digests": [DIGEST]},
    "download_layer": {"repository_name": "team/app", "layer_digest": DIGEST, "destination": "."},
    "get_image": {"repository_name": "team/app", "reference": "v1"},
    "get_config": {"image": "team/app", "reference": "v1"},
    "open_layer": {"repository_name": "team/app", "layer_digest": DIGEST},
    "pull_image": {"repository_name": "team/app", "reference": "v1", "destination": "layout"},
    "export_rootfs": {"repository_name": "team/app", "reference": "v1", "destination": "rootfs"},
    "read_file": {"repository_name": "team/app", "reference": "v1", "path": "/etc/os-release"},
}
NOT_A_SIZE = [None, 0, -1, "1", 1.5, True]

ROWS: list[tuple[str, str, list[Any]]] = [
    *((call, "repository_name", NOT_A_STR) for call in CALLS if "repository_name" in CALLS[call]),
    *((call, "registry_id", NOT_AN_OPTIONAL_STR) for call in CALLS),
    ("get_layer_url", "layer_digest", NOT_A_STR),
    ("get_layer_urls", "layer_digests", [None, DIGEST, 5, [[DIGEST]], [None], [5]]),
    ("get_layer_urls", "max_workers", NOT_A_COUNT),
    ("download_layer", "layer_digest", NOT_A_STR),
    ("download_layer", "destination", NOT_A_PATH),
    ("download_layer", "progress", NOT_CALLABLE),
    ("download_layer", "parallel", NOT_AN_OPTIONAL_COUNT),
    ("download_layer", "verify", NOT_A_BOOL),
    ("download_layer", "allow_http", NOT_A_BOOL),
    ("get_image", "reference", NOT_A_STR),
    ("get_image", "platform", [5, b"linux/amd64", "", "linux", ["linux/amd64"]]),
    ("get_config", "image", [None, 5, ["team/app"]]),
    ("get_config", "reference", [5, ["v1"]]),
    ("get_config", "platform", [5, "linux", ["linux/amd64"]]),
    ("get_config", "max_bytes", [None, 0, -1, "1", 1.5, True]),
    ("open_layer", "layer_digest", [*NOT_A_STR, ecr_layers.Descriptor("x", DIGEST, "12")]),  # type: ignore[arg-type]
    ("pull_image", "reference", NOT_A_STR),
    ("pull_image", "destination", NOT_A_PATH),
    ("pull_image", "platform", [5, "linux", ["linux/amd64"]]),
    ("pull_image", "max_parallel", NOT_A_COUNT),
    ("pull_image", "progress", NOT_CALLABLE),
    ("export_rootfs", "reference", NOT_A_STR),
    ("export_rootfs", "destination", NOT_A_PATH),
    ("export_rootfs", "platform", [5, "linux", ["linux/amd64"]]),
    ("export_rootfs", "max_size", NOT_A_SIZE),
    ("export_rootfs", "max_entries", NOT_A_SIZE),
    ("export_rootfs", "keep_special_bits", NOT_A_BOOL),
    ("export_rootfs", "progress", NOT_CALLABLE),
    ("read_file", "reference", NOT_A_STR),
    ("read_file", "path", [None, 5, b"/etc/os-release", ["/etc/os-release"]]),
    ("read_file", "platform", [5, "linux", ["linux/amd64"]]),
    ("read_file", "max_size", NOT_A_SIZE),
]


def _id(value: object) -> str:
    # The same in every process (pytest-xdist compares them): no object addresses.
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text[:30]


CASES = [
    pytest.param(call, name, value, id=f"{call}-{name}-{_id(value)}")
    for call, name, values in ROWS
    for value in values
]


def _run(kind: str, call: str, kwargs: dict[str, Any], local_ecr: LocalECR, args: Any = ()) -> Any:
    if kind == "sync":
        with ecr_layers.LayerClient(local_ecr.botocore_client()) as client:
            result = getattr(client, call)(*args, **kwargs)
            if hasattr(result, "close"):
                result.close()
            return result
    if kind == "module":
        return getattr(ecr_layers, call)(*args, **kwargs)
    from ecr_layers.aio import AsyncLayerClient

    async def main() -> Any:
        async with AsyncLayerClient(
            endpoint_url=local_ecr.endpoint_url, region_name=local_ecr.region_name
        ) as client:
            return await getattr(client, call)(*args, **kwargs)

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async", "module"])
@pytest.mark.parametrize(("call", "name", "value"), CASES)
def test_each_public_parameter_refuses_none_wrong_types_and_shapes(  # noqa: PLR0917
    kind: str,
    call: str,
    name: str,
    value: Any,
    local_ecr: LocalECR,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    kwargs = {**CALLS[call], name: value}
    with pytest.raises(ecr_layers.InvalidParameter) as info:
        _run(kind, call, kwargs, local_ecr)
    assert info.value.message
    assert local_ecr.stats.count() == 0  # refused before any request
    assert local_ecr.stats.blob_count() == 0
    assert list(tmp_path.iterdir()) == []


CONSTRUCTOR_ROWS: list[tuple[str, list[Any]]] = [
    ("client", [5, "ecr", object()]),
    ("session", [5, "default"]),
    ("region_name", [5, "", b"eu-west-1", ["eu-west-1"]]),
    ("endpoint_url", [5, b"http://x", ["http://x"]]),
    ("profile_name", [5, "", ["p"]]),
    ("config", [5, "x", {"retries": 1}]),
    ("retry_policy", [5, "fast", {"attempts": 1}]),
    ("download_retry_policy", [5, "fast"]),
]


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(name, value, id=f"{name}-{_id(value)}")
        for name, values in CONSTRUCTOR_ROWS
        for value in values
    ],
)
def test_each_constructor_setting_refuses_wrong_types(kind: str, name: str, value: Any) -> None:
    from ecr_layers.aio import AsyncLayerClient

    make: Callable[..., Any] = ecr_layers.LayerClient if kind == "sync" else AsyncLayerClient
    with pytest.raises(ecr_layers.InvalidParameter) as info:
        make(**{name: value})
    assert info.value.parameter == name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (name, value)
        for name in ("attempts", "wait_initial", "wait_max", "wait_jitter", "timeout")
        for value in ("1", [1], -1, float("nan"), True)
    ],
)
def test_each_retry_policy_setting_refuses_wrong_types(name: str, value: Any) -> None:
    with pytest.raises(ecr_layers.InvalidParameter):
        ecr_layers.RetryPolicy(**{name: value})


@pytest.mark.parametrize("size", ["x", 1.5, [1], True])
def test_an_async_stream_read_refuses_a_wrong_size(local_ecr: LocalECR, size: Any) -> None:
    from ecr_layers.aio import AsyncLayerClient

    [digest] = local_ecr.push_image("team/app", [b"layer"])

    async def main() -> None:
        async with (
            AsyncLayerClient(
                endpoint_url=local_ecr.endpoint_url, region_name=local_ecr.region_name
            ) as client,
            await client.open_layer("team/app", digest) as stream,
        ):
            with pytest.raises(ecr_layers.InvalidParameter):
                await stream.read(size)
            assert await stream.read() == b"layer"  # the stream is still good

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async", "module"])
@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("wrong", ["keyword", "missing", "too many"])
def test_a_call_the_signature_cannot_take_is_a_type_error_naming_the_method(  # noqa: PLR0917
    kind: str,
    call: str,
    wrong: str,
    local_ecr: LocalECR,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The byte-moving methods are made from `_operations`: Python's own error would
    # name ``Operations.<method>``, and the asyncio client's would come from a worker.
    monkeypatch.chdir(tmp_path)
    kwargs: dict[str, Any] = dict(CALLS[call])
    if wrong == "keyword":
        kwargs["bogus"] = 1
        expected = "unexpected keyword argument 'bogus'"
    elif wrong == "missing":
        del kwargs[next(iter(kwargs))]
        expected = "missing"
    else:
        kwargs = {"__args__": [*kwargs.values(), *range(12)]}
        expected = "positional argument"
    args = kwargs.pop("__args__", [])
    # A client's own method may say its class too (Python's own message), not a function.
    prefix = "" if kind == "module" else "((Async)?LayerClient\\.)?"
    with pytest.raises(TypeError, match=rf"^{prefix}{call}\(\) .*{expected}") as info:
        _run(kind, call, kwargs, local_ecr, args)
    assert "Operations" not in str(info.value)
    assert local_ecr.stats.count() == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", ["ecr_layers", "ecr_layers.aio"])
def test_a_module_function_called_wrongly_says_so_before_a_configuration_error(
    module: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default client is made on the first call; a machine with no region cannot make
    # one, but a call that could never work is the mistake to report first.
    import importlib

    functions = importlib.import_module(module)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    def export(**kwargs: Any) -> None:
        result = functions.export_rootfs("team/app", "v1", tmp_path / "root", **kwargs)
        if asyncio.iscoroutine(result):
            asyncio.run(result)

    previous = ecr_layers.set_default_client(None)
    try:
        with pytest.raises(TypeError, match=r"^export_rootfs\(\) got an unexpected keyword"):
            export(bogus=1)
        if module == "ecr_layers":  # and a right call still reports the machine's problem
            with pytest.raises(ecr_layers.ConfigurationError, match="region"):
                export()
    finally:
        ecr_layers.set_default_client(previous)
