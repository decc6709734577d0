"""
Check GetDownloadUrlForLayer's inputs locally, before any request is sent.

botocore checks only ``required`` and ``min``; a bad digest or a 300-character name
would otherwise cost a round trip (and a retry budget) to learn it is invalid.

The rules come from the botocore service model at run time, not from constants here:
the model's ``RepositoryName`` pattern is wider than the documented one (it allows
``a__b`` and ``a--b``), and the library must never reject what the service accepts.
A botocore upgrade that relaxes a rule then relaxes ours.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

import attrs

from ._exceptions import ImageRef, InvalidParameter

if TYPE_CHECKING:
    from botocore.model import ServiceModel

OPERATION = "GetDownloadUrlForLayer"
#: The model sets no maximum for ``layerDigest``; without one a 1 MB "digest" would be
#: sent.  No registered algorithm comes near (sha512's digest is 135 characters).
MAX_DIGEST_LENGTH = 255

#: The model gives ``imageTag`` only lengths.  Every registry's tags are printable
#: ASCII without "/", "@" or ":" (which would make a reference mean something
#: else); anything outside that cannot name an image, so it is refused locally.
_TAG = re.compile(r"[!-.0-9;-?A-~]+")

_log = logging.getLogger("ecr_layers")


@attrs.frozen
class Rule:
    """One field's rule, as the service model states it."""

    field: str
    pattern: re.Pattern[str] | None
    min_length: int | None
    max_length: int | None

    def check(self, value: object) -> None:
        """Raise `InvalidParameter` unless *value* satisfies this rule."""
        if not isinstance(value, str):
            raise InvalidParameter(
                f"{self.field} must be a str, got {type(value).__name__}",
                parameter=self.field,
            )
        size = len(value)
        if self.min_length is not None and size < self.min_length:
            self._fail(value, f"is {size} characters long, shorter than {self.min_length}")
        if self.max_length is not None and size > self.max_length:
            self._fail(value, f"is {size} characters long, longer than {self.max_length}")
        # fullmatch, not match + "$": "$" lets a trailing newline through.
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            self._fail(value, f"does not match the pattern {self.pattern.pattern}")

    def _fail(self, value: str, why: str) -> None:
        raise InvalidParameter(f"{self.field} {_truncated_repr(value)} {why}", parameter=self.field)


@attrs.frozen
class Validator:
    """The rules for one operation's string inputs, keyed by API field name."""

    rules: dict[str, Rule]

    def params(
        self, repository_name: object, layer_digest: object, registry_id: object
    ) -> dict[str, Any]:
        """Return the request parameters, or raise `InvalidParameter` for the first bad one."""
        rules = self.rules
        rules["repositoryName"].check(repository_name)
        rules["layerDigest"].check(layer_digest)
        params = {"repositoryName": repository_name, "layerDigest": layer_digest}
        if registry_id is not None:
            rules["registryId"].check(registry_id)
            params["registryId"] = registry_id
        return params

    def image_params(
        self, repository_name: object, reference: object, registry_id: object
    ) -> tuple[dict[str, Any], ImageRef, bool]:
        """Return BatchGetImage's parameters for one image, its `ImageRef`, and whether
        *reference* is a digest (else a tag); raise `InvalidParameter` for a bad input.

        A reference with a colon is a digest (tags cannot hold one), checked against
        the layer digest's pattern and length, since the model gives ``imageDigest``
        none; a tag against ``imageTag``'s rules.
        """
        rules = self.rules
        rules["repositoryName"].check(repository_name)
        if not isinstance(reference, str):
            raise InvalidParameter(
                f"reference must be a tag or digest str, got {type(reference).__name__}",
                parameter="reference",
            )
        is_digest = ":" in reference
        field = "imageDigest" if is_digest else "imageTag"
        rules[field].check(reference)
        params: dict[str, Any] = {
            "repositoryName": repository_name,
            "imageIds": [{field: reference}],
        }
        if registry_id is not None:
            rules["registryId"].check(registry_id)
            params["registryId"] = registry_id
        return params, ImageRef(repository_name, reference, registry_id), is_digest  # type: ignore[arg-type]


def directory_path(destination: object) -> str:
    """Return *destination* as a str path, or raise `InvalidParameter`.

    The rule a directory to create or fill (an OCI layout, an export's root) is given
    by: a str or os.PathLike of str, not empty (which would mean the working directory
    by accident) and without NUL (which no system call takes).
    """
    if not isinstance(destination, str | os.PathLike):
        raise InvalidParameter(
            f"destination must be a str or os.PathLike, got {type(destination).__name__}",
            parameter="destination",
        )
    raw = os.fspath(destination)
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise InvalidParameter(
            "destination must be a non-empty str path without NUL", parameter="destination"
        )
    return raw


def rules_from_model(service_model: ServiceModel, operation: str = OPERATION) -> Validator:
    """Build the validator for *operation* from a botocore service model."""
    input_shape = service_model.operation_model(operation).input_shape
    members = input_shape.members if input_shape is not None else {}
    rules = {}
    for name, member in members.items():
        meta = member.metadata
        rules[name] = Rule(
            field=name,
            pattern=_compile(name, meta.get("pattern")),
            min_length=meta.get("min"),
            max_length=meta.get("max", MAX_DIGEST_LENGTH if name == "layerDigest" else None),
        )
    # An image's reference: a tag by the model's ImageTag shape; a digest by the same
    # rule as a layer's (the model's ImageDigest states none).
    if "ImageTag" in service_model.shape_names:
        tag = service_model.shape_for("ImageTag").metadata
        pattern = _compile("imageTag", tag.get("pattern")) or _TAG
        rules["imageTag"] = Rule("imageTag", pattern, tag.get("min"), tag.get("max"))
    if "layerDigest" in rules:
        rules["imageDigest"] = attrs.evolve(rules["layerDigest"], field="imageDigest")
    return Validator(rules)


def _compile(field: str, pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        # The service's patterns are Java regexes. One that Python cannot compile is
        # left to the service to enforce rather than guessed at: rejecting input the
        # service would take is the one mistake this module must not make.
        _log.debug("ecr_layers: cannot compile the model's %s pattern; not checked", field)
        return None


def _truncated_repr(value: str, limit: int = 60) -> str:
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"
