from __future__ import annotations

import datetime as dt
import threading
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import LayerUrl, redact_url
from ecr_layers._url import expiry_from_url
from ecr_layers.testing import LocalECR

from .strategies import secret_parameter, urls


def test_module_level_call_uses_the_environment(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"bytes"])
    url = ecr_layers.get_layer_url("team/app", digest)
    assert url.layer_digest == digest
    assert url.download_url.startswith(local_ecr.endpoint_url)
    assert local_ecr.stats.count("GetDownloadUrlForLayer", status=200) == 1


def test_the_default_client_is_created_once_even_under_threads(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    real_init = ecr_layers.LayerClient.__init__

    def counting_init(self: ecr_layers.LayerClient, *args: object, **kwargs: object) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ecr_layers.LayerClient, "__init__", counting_init)
    barrier = threading.Barrier(8)
    seen: list[ecr_layers.LayerClient] = []

    def worker() -> None:
        barrier.wait()
        seen.append(ecr_layers.default_client())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1
    assert all(client is seen[0] for client in seen)


def test_layer_client_accepts_sessions_of_both_kinds(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    for session in (boto3.Session(), botocore.session.Session()):
        client = ecr_layers.LayerClient(session=session, endpoint_url=local_ecr.endpoint_url)
        assert client.get_layer_url("team/app", digest).layer_digest == digest
        retries = client.ecr.meta.config.retries  # type: ignore[attr-defined]
        assert retries is not None
        assert retries["total_max_attempts"] == 1


def test_a_callers_config_cannot_turn_botocore_retries_back_on(local_ecr: LocalECR) -> None:
    from botocore.config import Config

    client = ecr_layers.LayerClient(config=Config(retries={"max_attempts": 9}, read_timeout=7))
    config: Any = client.ecr.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert config.read_timeout == 7


def test_missing_region_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ecr_layers.ConfigurationError) as info:
        ecr_layers.LayerClient()
    assert info.value.code == "ConfigurationError"
    assert "region" in info.value.message


def test_unknown_profile_is_a_typed_error() -> None:
    with pytest.raises(ecr_layers.ConfigurationError):
        ecr_layers.LayerClient(profile_name="no-such-profile", region_name="us-east-1")


def test_missing_credentials_are_a_typed_error(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ecr_layers.CredentialsError):
        ecr_layers.LayerClient().get_layer_url("team/app", "sha256:ab")
    assert local_ecr.stats.count() == 0


def test_wrong_secret_is_refused_as_credentials_error(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(ecr_layers.CredentialsError) as info:
        ecr_layers.LayerClient().get_layer_url("team/app", "sha256:ab")
    assert info.value.code == "InvalidSignatureException"
    assert info.value.http_status == 400


def test_repr_shows_no_secret(local_ecr: LocalECR) -> None:
    [digest] = local_ecr.push_image("team/app", [b"x"])
    url = local_ecr.client().get_layer_url("team/app", digest)
    text = repr(url) + str(url)
    query = dict(p.split("=", 1) for p in url.download_url.split("?", 1)[1].split("&"))
    assert query["X-Amz-Signature"] not in text
    assert query["X-Amz-Credential"] not in text
    assert local_ecr.access_key_id not in text
    assert "REDACTED" in text
    assert local_ecr.secret_access_key not in repr(local_ecr.client())


def test_layer_url_is_frozen() -> None:
    url = LayerUrl("https://x", "sha256:ab")
    with pytest.raises(AttributeError):
        url.download_url = "https://y"  # type: ignore[misc]


def test_expiry() -> None:
    assert expiry_from_url("https://cdn.example.com/blob?token=abc") is None
    assert expiry_from_url("https://x/?X-Amz-Expires=60") is None
    assert expiry_from_url("https://x/?X-Amz-Date=garbage&X-Amz-Expires=60") is None
    got = expiry_from_url("https://x/?X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600")
    assert got == dt.datetime(2026, 1, 1, 1, tzinfo=dt.UTC)
    assert LayerUrl("u", "d", got).expired()
    assert not LayerUrl("u", "d", None).expired()
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert not LayerUrl("u", "d", future).expired()
    assert LayerUrl("u", "d", future).expired(margin=60)


SECRET = st.text(alphabet="abcdefABCDEF0123456789%/+=", min_size=8, max_size=40)


@given(SECRET, SECRET, SECRET, st.sampled_from(["https://h/p", "https://user:pw@h/p", "http://h"]))
def test_redaction_hides_every_secret(sig: str, cred: str, token: str, base: str) -> None:
    url = f"{base}?X-Amz-Credential={cred}&X-Amz-Signature={sig}&x-amz-security-token={token}&a=1"
    text = redact_url(url)
    assert f"={sig}" not in text
    assert f"={cred}" not in text
    assert f"={token}" not in text
    assert "pw" not in text
    assert "a=1" in text


@given(urls | st.text())
def test_redaction_hides_exactly_the_secret_values_and_the_password(text: str) -> None:
    shown = redact_url(text)
    try:
        parts = urlsplit(text)
    except ValueError:
        assert shown == "<unparseable URL>"
        return
    # Every query pair kept in order; a secret one's value replaced, whatever its case.
    expected = []
    for pair in filter(None, parts.query.split("&")):
        name, sep, _ = pair.partition("=")
        expected.append(f"{name}=REDACTED" if sep and secret_parameter(name) else pair)
    assert shown.partition("?")[2] == "&".join(expected)
    if parts.scheme and parts.netloc:  # then the rebuilt URL parses back to the same host
        userinfo, _, host = urlsplit(shown).netloc.rpartition("@")
        assert host == parts.netloc.rpartition("@")[2]
        if parts.password is not None:
            assert userinfo == f"{parts.username}:REDACTED"


def test_a_client_and_client_settings_are_not_mixed(local_ecr: LocalECR) -> None:
    with pytest.raises(ecr_layers.ConfigurationError):
        ecr_layers.LayerClient(local_ecr.botocore_client(), region_name="eu-west-1")


def test_a_ctrl_c_stops_every_lookup_of_get_layer_urls_at_once(
    local_ecr: LocalECR, monkeypatch: pytest.MonkeyPatch
) -> None:
    import _thread
    import time

    digests = local_ecr.push_image("team/app", [bytes([i]) * 10 for i in range(40)])
    arrived = threading.Semaphore(0)

    def latency(operation: str) -> float:  # every answer 5 s late: all four workers busy
        arrived.release()
        return 5.0

    monkeypatch.setattr(local_ecr.faults, "latency", latency)
    client = local_ecr.client()

    def interrupt_once_four_are_in_flight() -> None:
        for _ in range(4):
            arrived.acquire(timeout=30)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_four_are_in_flight, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.get_layer_urls("team/app", digests, max_workers=4)
    elapsed = time.monotonic() - started
    # Without the stop, the pool's exit ran the 36 queued lookups, 5 s each, four at once.
    assert elapsed < 5.0, elapsed
    assert not [t for t in threading.enumerate() if t.name.startswith("ecr-layers-lookup")]
