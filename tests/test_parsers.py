"""Hypothesis properties for every parser: URLs, digests, ranges, error bodies."""

from __future__ import annotations

import datetime as dt
import re
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import _mapping, _transfer
from ecr_layers._url import expiry_from_url
from ecr_layers.testing._s3 import parse_range as _parse_range

from .strategies import documented_digests, urls

HEX = "0123456789abcdef"
LAYER = ecr_layers.LayerRef("team/app", "sha256:ab")


@given(st.text() | urls)
def test_expiry_is_none_unless_the_url_says_and_never_raises(text: str) -> None:
    got = expiry_from_url(text)
    names = [pair.partition("=")[0] for pair in text.partition("?")[2].split("&")]
    if "X-Amz-Date" not in names or "X-Amz-Expires" not in names:
        assert got is None
    elif text.isascii() and names.count("X-Amz-Date") == names.count("X-Amz-Expires") == 1:
        assert got == _expiry_by_regex(text)  # the oracle's domain: see test_expiry_agrees...
    else:
        assert got is None or isinstance(got, dt.datetime)


@given(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
    st.integers(min_value=0, max_value=7 * 24 * 3600),
    st.lists(st.sampled_from(["X-Amz-Algorithm=AWS4-HMAC-SHA256", "a=b", "X-Amz-Signature=ff"])),
)
def test_expiry_is_date_plus_expires_wherever_the_parameters_stand(
    signed: dt.datetime, expires: int, others: list[str]
) -> None:
    signed = signed.replace(microsecond=0)
    params = [*others, f"X-Amz-Date={signed:%Y%m%dT%H%M%SZ}", f"X-Amz-Expires={expires}"]
    for order in (params, params[::-1]):
        url = "https://bucket.s3.amazonaws.com/key?" + "&".join(order)
        assert expiry_from_url(url) == signed.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=expires)


@given(st.text())
def test_check_digest_accepts_exactly_oci_sha256_and_sha512(digest: str) -> None:
    valid = re.fullmatch(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", digest) is not None
    if valid:
        assert _transfer.check_digest(digest, LAYER) in ("sha256", "sha512")
    else:
        with pytest.raises(ecr_layers.UnsupportedDigest):
            _transfer.check_digest(digest, LAYER)


@given(st.sampled_from(["sha256", "sha512"]), st.data())
def test_check_digest_accepts_generated_valid_digests(algorithm: str, data: st.DataObject) -> None:
    size = 64 if algorithm == "sha256" else 128
    encoded = data.draw(st.text(alphabet=HEX, min_size=size, max_size=size))
    assert _transfer.check_digest(f"{algorithm}:{encoded}", LAYER) == algorithm


@given(documented_digests)
def test_check_digest_never_raises_anything_else(digest: str) -> None:
    if re.fullmatch(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", digest):
        _transfer.check_digest(digest, LAYER)
        return
    layer = ecr_layers.LayerRef("team/app", digest)
    with pytest.raises(ecr_layers.UnsupportedDigest) as info:
        _transfer.check_digest(digest, layer)
    assert info.value.layer_digest == digest


@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_range_parsing_matches_http_semantics(size: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=size + 5))
    end = data.draw(st.one_of(st.none(), st.integers(min_value=0, max_value=size + 5)))
    header = f"bytes={start}-{'' if end is None else end}"
    got = _parse_range(header, size)
    if start >= size or (end is not None and end < start):
        assert got is None
    else:
        last = size - 1 if end is None else min(end, size - 1)
        assert got == (start, last + 1)


@given(st.text())
def test_range_parsing_never_raises(header: str) -> None:
    got = _parse_range(header, 100)
    assert got is None or 0 <= got[0] < got[1] <= 100


# S3's XML error bodies with any code and message in them, and bytes of any kind.
_ERROR_BODIES = st.binary() | st.builds(
    "<Error><Code>{}</Code><Message>{}</Message></Error>".format,
    st.sampled_from(["NoSuchKey", "SlowDown", "AccessDenied", "InternalError"]) | st.text(),
    st.text(),
).map(lambda text: text.encode("utf-8", "surrogatepass"))


@given(st.integers(min_value=300, max_value=599), _ERROR_BODIES, st.text())
def test_download_host_answers_always_map_to_one_typed_error(
    status: int, body: bytes, retry_after: str
) -> None:
    error = _mapping.from_download_answer(
        status, body, {"Retry-After": retry_after}, LAYER, url_expired=False
    )
    assert isinstance(error, ecr_layers.ECRError)
    assert error.layer == LAYER
    assert error.http_status == status
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in error.message + error.code)
    assert error.retry_after is None or 0 <= error.retry_after <= 3600


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (
            403,
            b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            ecr_layers.DownloadUrlExpired,
            "DownloadUrlExpired",
        ),
        (
            403,
            b"<Error><Code>AccessDenied</Code><Message>No</Message></Error>",
            ecr_layers.AccessDenied,
            "AccessDenied",
        ),
        (503, b"<Error><Code>SlowDown</Code></Error>", ecr_layers.Throttled, "SlowDown"),
        (429, b"", ecr_layers.Throttled, "ThrottlingException"),
        (500, b"<html>oops</html>", ecr_layers.ServerError, "ServerException"),
        (404, b"", ecr_layers.LayersNotFound, "LayersNotFoundException"),
        (
            400,
            b"<Error><Code>RequestExpired</Code></Error>",
            ecr_layers.DownloadError,
            "RequestExpired",
        ),
        (302, b"", ecr_layers.DownloadError, "DownloadError"),
    ],
)
def test_download_host_answers_map_like_the_api(
    status: int, body: bytes, cls: type[ecr_layers.ECRError], code: str
) -> None:
    error = _mapping.from_download_answer(status, body, {}, LAYER, url_expired=False)
    assert type(error) is cls
    assert error.code == code


def test_escape_sequences_from_the_server_never_reach_a_message() -> None:
    body = b"<Error><Code>Bad\x1b[31m</Code><Message>\x1b]0;pwned\x07hi</Message></Error>"
    error = _mapping.from_download_answer(400, body, {}, LAYER, url_expired=False)
    assert "\x1b" not in error.message + error.code
    assert "\x07" not in error.message


@given(st.sampled_from([200, 206]), st.integers(0, 10**12), st.data())
def test_content_range_parsing_reads_the_total_or_raises_a_server_error_with_context(
    status: int, start: int, data: st.DataObject
) -> None:
    first = data.draw(st.just(start) | st.integers(0, 10**12))
    content_range = data.draw(
        st.builds(
            "bytes {}-{}/{}".format,
            st.just(first),
            st.integers(0, 10**13),
            st.integers(0, 10**13).map(str) | st.just("*"),
        )
        | st.text()
    )
    length = data.draw(st.integers(0, 10**21).map(str) | st.text())
    headers = {"Content-Range": content_range, "Content-Length": length}
    if status == 206:
        # The range must be the one asked for; its total may be unknown ("*").
        match = re.fullmatch(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)", content_range)
        if match is None or int(match[1]) != start:
            with pytest.raises(ecr_layers.ServerError) as caught:
                _transfer.parse_range(status, headers, start, LAYER)
            assert caught.value.layer == LAYER
            return
        expected = None if match[3] == "*" else int(match[3])
    else:
        # Content-Length: ASCII digits only (int() would take "²" and " 1"), 20 at most.
        expected = int(length) if re.fullmatch(r"[0-9]{1,20}", length) else None
    assert _transfer.parse_range(status, headers, start, LAYER) == expected


def _expiry_by_regex(url: str) -> dt.datetime | None:
    # The earlier implementation, kept as an oracle for ASCII input where each parameter
    # appears once, as a signer writes them (its \d also took other scripts' digits, and
    # of a repeated parameter it took the first well-formed one, not the first).
    query = url.partition("?")[2]
    date = re.search(r"(?:^|&)X-Amz-Date=(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z(?:&|$)", query)
    expires = re.search(r"(?:^|&)X-Amz-Expires=(\d{1,10})(?:&|$)", query)
    if date is None or expires is None:
        return None
    try:
        year, month, day, hour, minute, second = map(int, date.groups())
        signed = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        return signed + dt.timedelta(seconds=int(expires[1]))
    except (ValueError, OverflowError):
        return None


def _near(valid: str, index: int, char: str) -> str:
    """*valid* with the character at *index* replaced (or *char* appended at the end)."""
    return valid[:index] + char + valid[index + 1 :]


_VALID_DATES = st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1)).map(
    lambda signed: f"{signed:%Y%m%dT%H%M%SZ}"
)
_DATES = _VALID_DATES | st.builds(
    _near, _VALID_DATES, st.integers(0, 16), st.sampled_from("0123456789TZx&")
)
_EXPIRIES = st.from_regex(r"[0-9]{1,11}", fullmatch=True) | st.text("0123456789x&", max_size=4)
_OTHERS = st.lists(st.sampled_from(["a=b", "X-Amz-Dates=1", "x=X-Amz-Date=1", "", "X-Amz-Expires"]))


@given(_DATES, _EXPIRIES, _OTHERS, st.randoms(use_true_random=False))
def test_expiry_agrees_with_the_regex_it_replaced(
    date: str, expires: str, others: list[str], random: Random
) -> None:
    params = [f"X-Amz-Date={date}", f"X-Amz-Expires={expires}", *others]
    random.shuffle(params)
    url = "https://bucket/key?" + "&".join(params)
    assert expiry_from_url(url) == _expiry_by_regex(url)


def test_expiry_takes_only_ascii_digits() -> None:
    # int() reads other scripts' digits; a signer never writes them.
    arabic_2026, arabic_60 = "\u0662\u0660\u0662\u0666", "\u0666\u0660"
    for date, expires in [(f"{arabic_2026}0101T000000Z", "60"), ("20260101T000000Z", arabic_60)]:
        assert expiry_from_url(f"https://x/?X-Amz-Date={date}&X-Amz-Expires={expires}") is None
