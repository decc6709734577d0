"""
LocalECR's request authentication: SigV4, verified with botocore's own signer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import time

import attrs
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ._signing import parse_amz_date

_AUTH_HEADER = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]+)"
)
#: AWS refuses requests signed more than 15 minutes away from its clock.
_MAX_SKEW = dt.timedelta(minutes=15)


@attrs.frozen
class AuthFailure(Exception):
    """Why a request was refused, as the AWS error it maps to."""

    code: str
    message: str
    status: int


def verify_sigv4(
    *,
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
) -> None:
    """Raise `AuthFailure` unless the request carries a valid SigV4 signature.

    *headers* are keyed by lower-case name.  The signature is recomputed with
    botocore's `SigV4Auth`, the code that made it, over only the headers the
    client says it signed.
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise AuthFailure(
            "MissingAuthenticationTokenException", "Missing Authentication Token", 403
        )
    match = _AUTH_HEADER.fullmatch(authorization.strip())
    if match is None:
        raise AuthFailure("IncompleteSignature", "The Authorization header is malformed.", 400)
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[3:] != [service, "aws4_request"]:
        raise AuthFailure("IncompleteSignature", "The credential scope is malformed.", 400)
    key_id, date, scope_region = scope[0], scope[1], scope[2]
    if key_id != access_key:
        raise AuthFailure(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            400,
        )
    if scope_region != region:
        raise AuthFailure(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'.",
            400,
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = parse_amz_date(amz_date)
    except ValueError:
        raise AuthFailure(
            "IncompleteSignature", "X-Amz-Date is missing or malformed.", 400
        ) from None
    if not amz_date.startswith(date) or abs(dt.datetime.now(dt.UTC) - signed_at) > _MAX_SKEW:
        raise AuthFailure("InvalidSignatureException", "Signature expired.", 400)

    signed_names = match["signed"].split(";")
    request = AWSRequest(
        method=method,
        url=f"http://{host}{path}",
        headers={name: headers.get(name, "") for name in signed_names},
        data=body,
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if not hmac.compare_digest(expected, match["signature"]):
        raise AuthFailure(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
            400,
        )


class RegistryTokens:
    """The registry API's passwords, as ``GetAuthorizationToken`` hands them out.

    Stateless: a password carries its expiry and generation, signed with a key only
    this endpoint knows, so issuing one stores nothing (a long ``serve`` does not grow)
    and `expire_all` only has to move the generation on.
    """

    def __init__(self, lifetime: float = 12 * 3600) -> None:
        self._key = os.urandom(32)
        self._generation = 0
        #: Seconds a new token is valid for (ECR's are valid for 12 hours).
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"RegistryTokens(lifetime={self.lifetime})"

    def issue(self) -> tuple[str, dt.datetime]:
        """Return a new password and when it expires."""
        expires = int(time.time() + self.lifetime)
        body = f"{self._generation}.{expires}"
        return f"{body}.{self._mac(body)}", dt.datetime.fromtimestamp(expires, dt.UTC)

    def check(self, password: str) -> bool:
        """Return whether *password* is one of ours, unexpired."""
        generation, _, rest = password.partition(".")
        expires, _, mac = rest.partition(".")
        body = f"{generation}.{expires}"
        return (
            hmac.compare_digest(self._mac(body).encode(), mac.encode())
            and generation == str(self._generation)
            and expires.isascii()
            and expires.isdigit()
            and int(expires) > time.time()
        )

    def expire_all(self) -> None:
        """Make every password issued so far expired."""
        self._generation += 1

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
