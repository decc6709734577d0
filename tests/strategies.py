"""Hypothesis strategies: the API's documented input patterns, image references, URLs,
and image manifests (valid, and valid but for one field)."""

from __future__ import annotations

import json
import re
import string
from typing import Any

from hypothesis import strategies as st

# The patterns exactly as the API reference documents them.
DOCUMENTED_REPOSITORY = r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
DOCUMENTED_DIGEST = r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"
DOCUMENTED_REGISTRY = r"[0-9]{12}"

_ALNUM = string.ascii_lowercase + string.digits


def _component() -> st.SearchStrategy[str]:
    """One path component of the documented pattern: ``[a-z0-9]+([._-][a-z0-9]+)*``."""
    part = st.text(_ALNUM, min_size=1, max_size=12)
    return st.builds(
        lambda first, rest: first + "".join(sep + more for sep, more in rest),
        part,
        st.lists(st.tuples(st.sampled_from("._-"), part), max_size=3),
    )


# Built from the pattern's parts rather than with from_regex, which draws names of
# hundreds of characters and is twenty times slower; a test checks them against the
# pattern all the same.
documented_repository_names = (
    st.lists(_component(), min_size=1, max_size=6)
    .map("/".join)
    .filter(lambda s: 2 <= len(s) <= 256)
)
documented_digests = st.from_regex(DOCUMENTED_DIGEST, fullmatch=True)
documented_registry_ids = st.from_regex(DOCUMENTED_REGISTRY, fullmatch=True)

# Text that is close to valid more often than uniform text would be.
near_misses = st.one_of(
    st.text(),
    st.text(alphabet="ab0_.-/:\n AZ", max_size=12),
    documented_repository_names.map(lambda s: s + "\n"),
    documented_digests.map(lambda s: s.upper() + "/"),
)

# -- image references: tags and digests, near the rules' edges ---------------------------

#: What a tag may hold, as ecr-layers documents it: printable ASCII but "/", ":" and "@".
TAG_CHARACTERS = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in "/:@")
TAG_MAX = 300
DIGEST_MAX = 255

references = st.one_of(
    st.text(TAG_CHARACTERS, min_size=1, max_size=TAG_MAX),
    st.text(TAG_CHARACTERS, min_size=TAG_MAX - 2, max_size=TAG_MAX + 2),
    # A valid tag with one character that a tag may not hold, anywhere in it.
    st.builds(
        lambda tag, bad, at: tag[:at] + bad + tag[at:],
        st.text(TAG_CHARACTERS, min_size=1, max_size=20),
        st.sampled_from(["/", "@", " ", "\n", "\t", "é", "\x7f", "\x00"]),
        st.integers(0, 20),
    ),
    documented_digests,
    documented_digests.map(lambda d: d + "a" * (DIGEST_MAX - len(d) + 1)),
    st.text("sha256:abcdefXYZ0123/@ ", min_size=1, max_size=20),
    st.text(min_size=1, max_size=40),
)


def reference_is_valid(reference: str) -> bool:
    """The oracle: a reference with a colon is a digest by the documented pattern (and at
    most 255 characters); any other is a tag of 1-300 of `TAG_CHARACTERS`."""
    if ":" in reference:
        return (
            len(reference) <= DIGEST_MAX and re.fullmatch(DOCUMENTED_DIGEST, reference) is not None
        )
    return 1 <= len(reference) <= TAG_MAX and all(c in TAG_CHARACTERS for c in reference)


# -- URLs with secrets in them ------------------------------------------------------------

#: Query parameters whose values are secrets, in the spellings signers use.
SECRET_PARAMETERS = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "x-amz-signature",
    "Signature",
    "Policy",
    "Key-Pair-Id",
    "sig",
    "token",
]
PLAIN_PARAMETERS = ["X-Amz-Date", "X-Amz-Expires", "X-Amz-Algorithm", "a", "response-type", ""]
_VALUE = st.text(string.ascii_letters + string.digits + "%/+=._-~", max_size=30)


def secret_parameter(name: str) -> bool:
    """The oracle: a parameter is secret when its name, in any case, says signature,
    credential or token anywhere, or is exactly policy, key-pair-id or sig."""
    lowered = name.lower()
    return any(word in lowered for word in ("signature", "credential", "token")) or (
        lowered in ("policy", "key-pair-id", "sig")
    )


urls = st.builds(
    lambda scheme, userinfo, host, path, pairs: (
        f"{scheme}://{userinfo}{host}{path}" + ("?" + "&".join(pairs) if pairs else "")
    ),
    st.sampled_from(["https", "http", "s3"]),
    st.sampled_from(["", "user@", "user:p4ssw0rd@", ":p4ssw0rd@"]),
    st.sampled_from(["bucket.s3.amazonaws.com", "127.0.0.1:5000", "[::1]:8080", "h"]),
    st.sampled_from(["", "/", "/k", "/blobs/sha256:ab/team/app"]),
    st.lists(
        st.one_of(
            st.builds(
                "{}={}".format, st.sampled_from(SECRET_PARAMETERS + PLAIN_PARAMETERS), _VALUE
            ),
            st.sampled_from(SECRET_PARAMETERS + PLAIN_PARAMETERS),  # a name without "="
        ),
        max_size=5,
    ),
)

# -- image manifests ------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: The OCI image spec's digest grammar: algorithm components joined by [+._-], a colon,
#: then the encoded part.
OCI_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
MAX_SIZE = 2**63 - 1

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)

_ALGORITHM_PART = st.text(_ALNUM, min_size=1, max_size=6)
oci_digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    # The grammar's corners: several algorithm components, any encoded characters.
    st.builds(
        lambda first, rest, encoded: first + "".join(s + p for s, p in rest) + ":" + encoded,
        _ALGORITHM_PART,
        st.lists(st.tuples(st.sampled_from("+._-"), _ALGORITHM_PART), max_size=2),
        st.text(string.ascii_letters + string.digits + "=_-", min_size=1, max_size=20),
    ),
)

descriptors = st.fixed_dictionaries(
    {
        "mediaType": st.sampled_from(
            [
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ]
        )
        | st.text(max_size=20),
        "digest": oci_digests,
        "size": st.integers(0, MAX_SIZE),
    },
    optional={"annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=10))},
)

manifests = st.fixed_dictionaries(
    {
        "schemaVersion": st.just(2),
        "mediaType": st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST]),
        "config": descriptors,
        "layers": st.lists(descriptors, max_size=3),
    },
    optional={"annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=10))},
)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: A member left out: as wrong as a wrong value.
MISSING: Any = _Missing()

#: What a descriptor's member may not be, at the edges: drawn first, and named in examples.
WRONG_EDGES: dict[str, list[Any]] = {
    "mediaType": [MISSING, None, 5, ["x"]],
    "digest": [MISSING, None, 5, "", "sha256:", ":abc", "SHA256:abc", "sha256:ab/cd", "sha256::ab"],
    "size": [MISSING, None, True, False, -1, MAX_SIZE + 1, 1.0, "1"],
    "annotations": [["x"], 1, {"a": 1}, {"a": None}],
}
#: And anywhere else in their wrong kinds.
_WRONG_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "mediaType": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2)),
    "digest": st.one_of(
        st.integers(),
        st.text(max_size=20).filter(lambda s: re.fullmatch(OCI_DIGEST, s) is None),
    ),
    "size": st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=MAX_SIZE + 1),
        st.floats(0, 10**6),
        st.text(max_size=5),
    ),
    "annotations": st.one_of(
        st.lists(st.text(max_size=3), min_size=1, max_size=2),
        st.integers(min_value=1),
        st.dictionaries(st.text(max_size=5), st.integers() | st.none(), min_size=1, max_size=2),
    ),
}
_NOT_A_LIST = st.none() | st.text(max_size=5) | st.dictionaries(st.text(max_size=3), json_values)
_NOT_AN_OBJECT = json_values.filter(lambda v: not isinstance(v, dict))


def spoil(document: dict[str, Any], where: str, value: Any) -> tuple[dict[str, Any], str]:
    """A copy of *document* with *where* (``"layers"``, ``"config"``, ``"config.size"``,
    ``"layers[1].digest"``...) set to *value*, or removed when it is `MISSING`."""
    spoilt: dict[str, Any] = json.loads(json.dumps(document))
    target, _, member = where.rpartition(".")
    holder = spoilt
    if target == "config":
        holder = spoilt["config"]
    elif target:
        holder = spoilt["layers"][int(target.removeprefix("layers[").removesuffix("]"))]
    name = member or where
    if value is MISSING:
        del holder[name]
    else:
        holder[name] = value
    return spoilt, where


@st.composite
def manifests_with_one_field_wrong(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid image manifest with exactly one thing wrong; returns it and what is wrong.

    What is wrong: ``"layers"`` (not a list), ``"config"`` (missing or not an object), or a
    member of the config or of one layer (``"config.size"``, ``"layers[1].digest"``...).
    """
    document: dict[str, Any] = draw(manifests)
    holders = ["config"] + [f"layers[{i}]" for i in range(len(document["layers"]))]
    where = draw(
        st.sampled_from(["layers", "config"])
        | st.builds("{}.{}".format, st.sampled_from(holders), st.sampled_from(sorted(WRONG_EDGES)))
    )
    if where == "layers":
        return spoil(document, where, draw(_NOT_A_LIST))
    if where == "config":
        return spoil(document, where, draw(st.just(MISSING) | _NOT_AN_OBJECT))
    member = where.rpartition(".")[2]
    return spoil(
        document, where, draw(st.sampled_from(WRONG_EDGES[member]) | _WRONG_MEMBERS[member])
    )


def as_bytes(document: Any) -> st.SearchStrategy[bytes]:
    """*document* as JSON text, in any of the layouts a registry may store it in."""
    return st.builds(
        lambda indent, ascii_only: json.dumps(
            document, indent=indent, ensure_ascii=ascii_only
        ).encode(),
        st.none() | st.integers(0, 3),
        st.booleans(),
    )
