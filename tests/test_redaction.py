"""No secret of a pre-signed URL leaves the library, in whatever form a host echoes it.

The library knows the signature, credential and security token of every URL it
fetched, and scrubs those values, raw or encoded, from every text that leaves it:
errors (message, args, attributes, notes, cause chain, traceback), the log records of
``ecr_layers``, urllib3 and botocore, and so the command line's stderr.

Each test of a host's echo here failed on the code that redacted secrets by their
parameter's name only (issue 19, finding 4).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import pathlib
import re
import secrets
import subprocess
import sys
import traceback
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from xml.sax.saxutils import escape

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ecr_layers
from ecr_layers import _url
from ecr_layers.testing import LocalECR

from . import hostile
from .hostile import point_at
from .imaging import Synchronous

HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@attrs.frozen
class Signed:
    """A pre-signed URL to a host, and the secrets in it (decoded)."""

    url: str
    signature: str
    key_id: str
    credential: str
    token: str

    @property
    def secrets(self) -> list[str]:
        return [self.signature, self.key_id, self.credential, self.token]


def sign(base: str) -> Signed:
    """A SigV4-shaped pre-signed URL for *base*: fresh secrets, each test its own."""
    while True:  # a token with every character that percent-encoding changes
        token = base64.b64encode(os.urandom(121)).decode()
        if "+" in token and "/" in token:
            break
    key_id = "ASIA" + secrets.token_hex(8).upper()
    credential = f"{key_id}/20260101/us-east-1/s3/aws4_request"
    signature = secrets.token_hex(32)
    query = urlencode(
        [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", credential),
            ("X-Amz-Date", dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")),
            ("X-Amz-Expires", "3600"),
            ("X-Amz-SignedHeaders", "host"),
            ("X-Amz-Security-Token", token),
            ("X-Amz-Signature", signature),
        ],
        quote_via=quote,  # as AWS signs: "/" is %2F, "+" %2B, "=" %3D
    )
    return Signed(f"{base}?{query}", signature, key_id, credential, token)


def sent(target: str) -> dict[str, str]:
    """The request's query parameters as they were sent (still percent-encoded)."""
    query = urlsplit(target).query
    return dict(pair.split("=", 1) for pair in query.split("&"))


def decoded(target: str, name: str) -> str:
    return dict(parse_qsl(urlsplit(target).query))[name]


def error_xml(message: str = "Please try again.", code: str = "InternalError") -> str:
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"


def _echo_query(target: str) -> str:
    query = sent(target)
    signature, credential = query["X-Amz-Signature"], query["X-Amz-Credential"]
    return f"X-Amz-Signature={signature}&X-Amz-Credential={credential}"


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), text)


def _char_refs(text: str) -> str:
    return text.replace("+", "&#43;").replace("/", "&#x2f;").replace("=", "&#61;")


#: How a host may quote the request back in its XML error, each a function of the
#: request target (path and query) it received.
ECHOES: dict[str, Callable[[str], str]] = {
    "raw": lambda t: error_xml(escape(_echo_query(t))),
    "percent-encoded": lambda t: error_xml(quote(_echo_query(t), safe="")),
    "percent-encoded twice": lambda t: error_xml(quote(quote(_echo_query(t), safe=""), safe="")),
    "lower-case hex": lambda t: error_xml(_lower_hex(quote(_echo_query(t), safe=""))),
    "bare signature": lambda t: error_xml(
        f"The signature you provided does not match: {decoded(t, 'X-Amz-Signature')}"
    ),
    "bare signature, upper case": lambda t: error_xml(
        f"signature {decoded(t, 'X-Amz-Signature').upper()} refused"
    ),
    "signature in <Code>": lambda t: error_xml(code=decoded(t, "X-Amz-Signature")),
    "credential in <Code>": lambda t: error_xml(code=decoded(t, "X-Amz-Credential")),
    "access key id": lambda t: error_xml(f"key {decoded(t, 'X-Amz-Credential')[:20]} throttled"),
    "bare token": lambda t: error_xml(decoded(t, "X-Amz-Security-Token")),
    "token as sent": lambda t: error_xml(sent(t)["X-Amz-Security-Token"]),
    "token as XML character references": lambda t: error_xml(
        _char_refs(decoded(t, "X-Amz-Security-Token"))
    ),
}


def texts_of(error: BaseException) -> str:
    """Every text of *error* a caller, a log or an error tracker may show, as one."""
    texts = ["".join(traceback.format_exception(error)), str(error), repr(error)]
    link: BaseException | None = error
    seen: list[BaseException] = []
    while link is not None and link not in seen:
        seen.append(link)
        texts += [str(link), repr(link), repr(link.args), repr(vars(link))]
        texts += getattr(link, "__notes__", [])
        link = link.__cause__ or link.__context__
    return "\n".join(texts)


def assert_clean(text: str, signed: Signed, digest: str) -> None:
    """No secret of *signed*, nor any piece of one, in *text*; no 64-hex but *digest*'s."""
    assert text  # something was looked at
    folded = text.lower()
    for secret in signed.secrets:
        for piece in re.findall(r"[A-Za-z0-9]{12,}", secret):
            assert piece.lower() not in folded, (secret, text)
    assert set(HEX64.findall(text)) <= {digest.removeprefix("sha256:")}, text


@pytest.fixture
def ecr(local_ecr: LocalECR) -> LocalECR:
    """``either``'s LocalECR (unused: every lookup here answers the echoing host's URL)."""
    return local_ecr


# -- what a host echoes never reaches the error, nor the logs ---------------------------


@pytest.mark.parametrize("form", ECHOES)
def test_an_echoed_secret_is_in_no_text_of_the_error(
    form: str, either: Synchronous, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hostile.echoing(hostile.echo(ECHOES[form])) as host:
        signed = sign(host.url(""))
        point_at(monkeypatch, host, signed.url)
        with pytest.raises(ecr_layers.ECRError) as info:
            either.download_layer("team/app", host.digest, tmp_path)
        assert host.requests == 3  # a 503: retried, FAST's attempts
    assert isinstance(info.value, ecr_layers.ServerError)
    assert_clean(texts_of(info.value), signed, host.digest)


@pytest.mark.parametrize("form", ECHOES)
def test_an_echoed_secret_is_in_no_log_record_of_any_logger(
    form: str,
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, urllib3's, botocore's
    with hostile.echoing(hostile.echo(ECHOES[form])) as host:
        signed = sign(host.url(""))
        point_at(monkeypatch, host, signed.url)
        with pytest.raises(ecr_layers.ServerError):
            either.download_layer("team/app", host.digest, tmp_path)
    retries = [r for r in caplog.records if r.name == "ecr_layers" and "retrying" in r.message]
    assert len(retries) == 2  # the WARNING line of each retry was looked at
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert_clean(logged, signed, host.digest)


def test_urllib3s_warning_about_a_malformed_header_quotes_no_secret(
    either: Synchronous,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # urllib3 logs "Failed to parse headers (url=...)" with the URL it requested, and
    # the unparsed header (the host's echo of it) in the exception it attaches.
    caplog.set_level(logging.WARNING)
    with hostile.echoing(hostile.echo(ECHOES["raw"], malformed_header=True)) as host:
        signed = sign(host.url(""))
        point_at(monkeypatch, host, signed.url)
        with pytest.raises(ecr_layers.ServerError):
            either.download_layer("team/app", host.digest, tmp_path)
    warned = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert warned
    assert all(r.exc_info for r in warned)
    assert "Failed to parse headers" in caplog.text
    assert_clean(caplog.text, signed, host.digest)


# -- nor the command line's stderr ------------------------------------------------------

# The command line, in a process of its own, with its lookups answering the echoing
# host's URL, logging everything to stderr, and ECR_LAYERS_DEBUG's traceback on.
_CLI = """
import logging, runpy, sys
import ecr_layers

url = sys.argv.pop(1)
ecr_layers.LayerClient.lookup_once = lambda self, layer: ecr_layers.LayerUrl(
    url, layer.layer_digest
)
ecr_layers.set_testing(True, attempts=2)
logging.basicConfig(level=logging.DEBUG)
runpy.run_module("ecr_layers", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "form", ["raw", "percent-encoded", "bare signature", "signature in <Code>"]
)
def test_an_echoed_secret_is_not_on_the_command_lines_stderr(
    form: str, tmp_path: pathlib.Path
) -> None:
    env = {
        **os.environ,
        "ECR_LAYERS_DEBUG": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-secret",
    }
    with hostile.echoing(hostile.echo(ECHOES[form], malformed_header=True)) as host:
        signed = sign(host.url(""))
        out = subprocess.run(
            [sys.executable, "-c", _CLI, signed.url, "download", "team/app", host.digest,
             "-o", str(tmp_path)],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert host.requests == 2
    assert out.returncode == 5, out.stderr  # transient, after retries
    assert "ecr-layers: ServerError" in out.stderr
    assert "Traceback" in out.stderr  # the debug traceback was looked at, too
    assert "Failed to parse headers" in out.stderr  # and urllib3's warning
    assert_clean(out.stderr + out.stdout, signed, host.digest)


# -- the scrubber: any secret, any form, any text around it -----------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
secret_values = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64),  # a signature
    st.builds(  # a credential
        lambda key, date: f"AKIA{key}/{date}/us-east-1/ecr/aws4_request",
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16),
        st.text("0123456789", min_size=8, max_size=8),
    ),
    st.text(_B64, min_size=24, max_size=300).filter(  # a token
        lambda s: re.search(r"[A-Za-z0-9]{8}", s) is not None
    ),
)


def _xml_named(text: str) -> str:
    return escape(text, {'"': "&quot;", "'": "&apos;"})


#: Every form the issue names: raw, percent-encoded once and twice, in either case of
#: hex, inside XML (escaped, or as character references), and form-decoded.
FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "percent-encoded": lambda s: quote(s, safe=""),
    "percent-encoded, slashes kept": quote,
    "percent-encoded twice": lambda s: quote(quote(s, safe=""), safe=""),
    "lower-case hex": lambda s: _lower_hex(quote(s, safe="")),
    "lower-case hex twice": lambda s: _lower_hex(quote(quote(s, safe=""), safe="")),
    "upper case": str.upper,
    "lower case": str.lower,
    "XML-escaped": lambda s: f"<Code>{_xml_named(s)}</Code>",
    "XML character references": _char_refs,
    "form-decoded": lambda s: s.replace("+", " "),
}


@given(
    secret=secret_values,
    form=st.sampled_from(sorted(FORMS)),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
@example(secret="0" * 64, form="upper case", before="x", after="")
def test_a_remembered_secret_in_any_form_is_scrubbed_from_any_text(
    secret: str, form: str, before: str, after: str
) -> None:
    _url.remember(f"https://h.example/k?X-Amz-Security-Token={quote(secret, safe='')}&a=b")
    echoed = FORMS[form](secret)
    cleaned = _url.redact_secrets(before + echoed + after)
    assert echoed.lower() not in cleaned.lower()
    assert "REDACTED" in cleaned


@given(secret=secret_values, form=st.sampled_from(sorted(FORMS)), text=st.text(max_size=40))
def test_a_secret_given_in_any_form_is_scrubbed_from_an_exception_and_its_chain(
    secret: str, form: str, text: str
) -> None:
    echoed = FORMS[form](secret)
    cause = OSError(f"{text}{echoed}")
    cause.add_note(f"note: {echoed}")
    error = RuntimeError("wrapped", {"url": echoed})
    error.__cause__ = cause
    _url.scrub(error, [secret])
    for link in (error, cause):
        printed = texts_of(link).lower()
        assert echoed.lower() not in printed


def test_a_url_about_to_be_fetched_is_remembered() -> None:
    signed = sign("https://bucket.example/blob")
    _url.check_download_url(signed.url, allow_http=False)
    text = " ".join(FORMS[form](s) for s in signed.secrets for form in FORMS)
    assert_clean(_url.redact_secrets(text), signed, "sha256:" + "0" * 64)


def test_text_without_secrets_is_left_alone() -> None:
    _url.remember(sign("https://bucket.example/blob").url)
    text = "the download host answered HTTP 503: Please try again, sha256:" + "a" * 64
    assert _url.redact_secrets(text) == text


# -- the log records' scrubbing, at its edges --------------------------------------------


def test_a_logged_exception_that_refuses_to_be_scrubbed_is_not_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @attrs.frozen(auto_exc=True)
    class Stubborn(Exception):
        detail: str

    signed = sign("https://bucket.example/blob")
    _url.remember(signed.url)
    caplog.set_level(logging.WARNING)
    try:
        raise Stubborn(quote(signed.signature))
    except Stubborn:
        logging.getLogger("urllib3.connectionpool").warning("it failed", exc_info=True)
    [record] = caplog.records
    assert record.exc_info is None
    assert "it failed" in caplog.text
    assert "exception not shown" in caplog.text
    assert_clean(caplog.text, signed, "")


def test_only_the_library_and_its_transports_records_are_scrubbed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signed = sign("https://bucket.example/blob")
    _url.remember(signed.url)
    caplog.set_level(logging.INFO)
    for name in ("ecr_layers.x", "urllib3.connection", "botocore.endpoint", "aiobotocore.x"):
        logging.getLogger(name).info("echo %s", signed.signature)
    logging.getLogger("myapp").info("mine %s", signed.signature)
    assert [r.getMessage() for r in caplog.records] == [
        *["echo REDACTED"] * 4,
        f"mine {signed.signature}",  # the application's: RedactingFilter is for those
    ]
