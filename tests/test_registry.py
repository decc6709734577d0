"""LocalECR's registry API (``/v2/``): uploads, manifests, discovery, auth, errors, faults.

Requests are made by hand (tests/registry.py) so every status, header and error code
is the one the server sent.  One LocalECR for the module; each test uses
repositories of its own.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import time
from collections.abc import Iterator

import pytest

from ecr_layers.testing import LocalECR

from .registry import OCI_INDEX, OCI_MANIFEST, V2, error_codes, image_manifest, sha256, with_digest


@pytest.fixture(scope="module")
def ecr() -> Iterator[LocalECR]:
    with LocalECR(create_repositories_on_push=True) as server:
        yield server


@pytest.fixture
def v2(ecr: LocalECR) -> V2:
    return V2(ecr.endpoint_url, ecr.login_password())


def repo(request: pytest.FixtureRequest) -> str:
    name: str = request.node.name
    return "t/" + name.lower().replace("_", "-")[:60]


# -- auth --------------------------------------------------------------------------------


def test_get_authorization_token_is_the_registry_password(ecr: LocalECR) -> None:
    [data] = ecr.botocore_client().get_authorization_token()["authorizationData"]
    import base64

    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    assert data["proxyEndpoint"] == ecr.endpoint_url
    remaining = data["expiresAt"].timestamp() - time.time()
    assert 11 * 3600 < remaining <= 12 * 3600
    assert V2(ecr.endpoint_url, password)("GET", "/v2/").status == 200
    assert password not in repr(ecr.tokens) + repr(ecr)


@pytest.mark.parametrize("password", [None, "0.99999999999.forged", "garbage"])
def test_v2_refuses_missing_or_wrong_credentials(ecr: LocalECR, password: str | None) -> None:
    answer = V2(ecr.endpoint_url, password)("GET", "/v2/")
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert error_codes(answer) == ["UNAUTHORIZED"]


def test_expired_tokens_are_refused_and_new_ones_work() -> None:
    with LocalECR() as ecr:
        old = V2(ecr.endpoint_url, ecr.login_password())
        assert old("GET", "/v2/").status == 200
        ecr.expire_tokens()
        assert old("GET", "/v2/").status == 401
        assert V2(ecr.endpoint_url, ecr.login_password())("GET", "/v2/").status == 200


# -- blobs -----------------------------------------------------------------------------


def test_a_chunked_upload_with_its_session_headers(
    ecr: LocalECR, v2: V2, request: pytest.FixtureRequest
) -> None:
    name, data = repo(request), os.urandom(3000)
    started = v2("POST", f"/v2/{name}/blobs/uploads/")
    assert started.status == 202
    session = started.headers["Docker-Upload-UUID"]
    assert started.headers["Location"].endswith(f"/v2/{name}/blobs/uploads/{session}")
    assert started.headers["Range"] == "0-0"
    location = started.headers["Location"]
    first = v2("PATCH", location, data[:1000], {"Content-Range": "0-999"})
    assert (first.status, first.headers["Range"]) == (202, "0-999")
    # A chunk that does not follow on is 416, and changes nothing.
    skipped = v2("PATCH", location, data[1500:], {"Content-Range": "1500-2999"})
    assert skipped.status == 416
    status = v2("GET", location)
    assert (status.status, status.headers["Range"]) == (204, "0-999")
    assert status.headers["Docker-Upload-UUID"] == session
    second = v2("PATCH", location, data[1000:], {"Content-Range": "1000-2999"})
    assert second.headers["Range"] == "0-2999"
    done = v2("PUT", with_digest(location, sha256(data)))
    assert done.status == 201
    assert done.headers["Docker-Content-Digest"] == sha256(data)
    ecr.redirect_blobs = False
    try:
        got = v2("GET", f"/v2/{name}/blobs/{sha256(data)}")
        part = v2("GET", f"/v2/{name}/blobs/{sha256(data)}", headers={"Range": "bytes=10-19"})
    finally:
        ecr.redirect_blobs = True
    assert got.data == data
    assert (part.status, part.data, part.headers["Content-Range"]) == (
        206,
        data[10:20],
        "bytes 10-19/3000",
    )


def test_a_blob_get_redirects_to_a_signed_url_and_head_does_not(
    ecr: LocalECR, v2: V2, request: pytest.FixtureRequest
) -> None:
    name, data = repo(request), os.urandom(100)
    digest = v2.push_blob(name, data)
    head = v2("HEAD", f"/v2/{name}/blobs/{digest}")
    assert (head.status, head.headers["Content-Length"]) == (200, "100")
    assert head.headers["Docker-Content-Digest"] == digest
    moved = v2("GET", f"/v2/{name}/blobs/{digest}")
    assert moved.status == 307
    before = ecr.stats.blob_count(digest, status=200)
    assert v2("GET", moved.headers["Location"]).data == data
    assert ecr.stats.blob_count(digest, status=200) == before + 1


def test_a_wrong_digest_is_digest_invalid_and_cancels_the_upload(
    v2: V2, request: pytest.FixtureRequest
) -> None:
    name = repo(request)
    location = v2("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    wrong = v2("PUT", with_digest(location, sha256(b"other")), b"data")
    assert (wrong.status, error_codes(wrong)) == (400, ["DIGEST_INVALID"])
    assert error_codes(v2("GET", location)) == ["BLOB_UPLOAD_UNKNOWN"]
    monolithic = v2("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(b'x')}", b"y")
    assert (monolithic.status, error_codes(monolithic)) == (400, ["DIGEST_INVALID"])
    assert v2("HEAD", f"/v2/{name}/blobs/{sha256(b'y')}").status == 404


def test_monolithic_post_and_cancel(v2: V2, request: pytest.FixtureRequest) -> None:
    name, data = repo(request), b"whole blob"
    done = v2("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data)
    assert (done.status, done.headers["Docker-Content-Digest"]) == (201, sha256(data))
    location = v2("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    assert v2("DELETE", location).status == 204
    assert v2("PATCH", location, b"late").status == 404


def test_a_chunked_transfer_encoded_body_is_read(v2: V2, request: pytest.FixtureRequest) -> None:
    name, data = repo(request), os.urandom(70_000)
    location = v2("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    pieces = iter([data[:5], data[5:40_000], data[40_000:]])
    done = v2.http.request(
        "PUT", with_digest(location, sha256(data)), body=pieces, headers=v2.headers,
        chunked=True,
    )  # fmt: skip
    assert done.status == 201, done.data


def test_cross_repository_mount_and_its_fallback(v2: V2, request: pytest.FixtureRequest) -> None:
    source, target = repo(request) + "-a", repo(request) + "-b"
    digest = v2.push_blob(source, b"shared")
    mounted = v2("POST", f"/v2/{target}/blobs/uploads/?mount={digest}&from={source}")
    assert (mounted.status, mounted.headers["Docker-Content-Digest"]) == (201, digest)
    assert v2("HEAD", f"/v2/{target}/blobs/{digest}").status == 200
    absent = sha256(b"absent")
    fallback = v2("POST", f"/v2/{target}/blobs/uploads/?mount={absent}&from={source}")
    assert fallback.status == 202
    assert "Docker-Upload-UUID" in fallback.headers


def test_two_pushes_of_one_blob_at_once_both_succeed_and_store_it_once(
    ecr: LocalECR, v2: V2, request: pytest.FixtureRequest
) -> None:
    name, data = repo(request), os.urandom(2 * 1024 * 1024)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        digests = list(pool.map(lambda _: v2.push_blob(name, data), range(2)))
    assert digests == [sha256(data)] * 2
    stored = [p for p in ecr.registry.blobs.directory.iterdir() if p.name.endswith(data_hex(data))]
    assert len(stored) == 1
    assert stored[0].read_bytes() == data


def data_hex(data: bytes) -> str:
    return sha256(data).split(":")[1]


def test_abandoned_uploads_expire() -> None:
    with LocalECR(create_repositories_on_push=True) as ecr:
        v2 = V2(ecr.endpoint_url, ecr.login_password())
        location = v2("POST", "/v2/t/expiry/blobs/uploads/").headers["Location"]
        v2("PATCH", location, b"abandoned")
        ecr.registry.uploads.lifetime = 0
        assert error_codes(v2("GET", location)) == ["BLOB_UPLOAD_UNKNOWN"]
        assert list((ecr.registry.blobs.directory / ".uploads").iterdir()) == []


# -- manifests -------------------------------------------------------------------------


def push_image(v2: V2, name: str, tag: str, **extra: object) -> tuple[bytes, str]:
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(64)
    v2.push_blob(name, config)
    v2.push_blob(name, layer)
    manifest = image_manifest(config, [layer], **extra)
    answer = v2.put_manifest(name, tag, manifest)
    assert answer.status == 201, answer.data
    return manifest, sha256(manifest)


def test_manifests_by_tag_and_digest_byte_for_byte(
    ecr: LocalECR, v2: V2, request: pytest.FixtureRequest
) -> None:
    name = repo(request)
    manifest, digest = push_image(v2, name, "v1")
    for reference in ("v1", digest):
        got = v2("GET", f"/v2/{name}/manifests/{reference}")
        assert got.data == manifest
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.headers["Docker-Content-Digest"] == digest
        head = v2("HEAD", f"/v2/{name}/manifests/{reference}")
        assert (head.status, head.headers["Content-Length"]) == (200, str(len(manifest)))
    # The ECR API sees the same bytes.
    [image] = ecr.botocore_client().batch_get_image(
        repositoryName=name, imageIds=[{"imageTag": "v1"}]
    )["images"]
    assert image["imageId"]["imageDigest"] == digest
    assert image["imageManifest"].encode() == manifest
    missing = v2("GET", f"/v2/{name}/manifests/nope")
    assert (missing.status, error_codes(missing)) == (404, ["MANIFEST_UNKNOWN"])
    assert v2("DELETE", f"/v2/{name}/manifests/{digest}").status == 202
    assert v2("GET", f"/v2/{name}/manifests/v1").status == 404


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


@pytest.mark.parametrize(
    ("manifest_type", "index_type"), [(OCI_MANIFEST, OCI_INDEX), (DOCKER_MANIFEST, DOCKER_LIST)]
)
def test_manifests_and_indexes_are_stored_as_given(
    v2: V2, request: pytest.FixtureRequest, manifest_type: str, index_type: str
) -> None:
    name = repo(request)[:40] + manifest_type.split(".")[1]
    config, layer = b'{"os":"linux"}', os.urandom(64)
    v2.push_blob(name, config)
    v2.push_blob(name, layer)
    manifest = json.loads(image_manifest(config, [layer]))
    manifest["mediaType"] = manifest_type
    data = json.dumps(manifest, indent=2).encode()  # not the canonical form: kept as sent
    assert v2.put_manifest(name, "amd64", data, manifest_type).status == 201
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": index_type,
         "manifests": [{"mediaType": manifest_type, "digest": sha256(data), "size": len(data)}]},
        indent=3,
    ).encode()  # fmt: skip
    put = v2.put_manifest(name, "v1", index, index_type)
    assert (put.status, put.headers["Docker-Content-Digest"]) == (201, sha256(index))
    for reference, body, media_type in (("v1", index, index_type), ("amd64", data, manifest_type)):
        got = v2("GET", f"/v2/{name}/manifests/{reference}")
        assert (got.data, got.headers["Content-Type"]) == (body, media_type)


def test_manifest_errors(v2: V2, request: pytest.FixtureRequest) -> None:
    name = repo(request)
    missing = v2.put_manifest(name, "v1", image_manifest(b"{}", [b"never pushed"]))
    assert (missing.status, error_codes(missing)) == (400, ["MANIFEST_BLOB_UNKNOWN"])
    big = v2.put_manifest(name, "v1", image_manifest(b"{}", []) + b" " * (4 * 1024 * 1024))
    assert (big.status, error_codes(big)) == (413, ["MANIFEST_INVALID"])
    assert "4194304" in json.loads(big.data)["errors"][0]["message"]
    bad = v2.put_manifest(name, "v1", b"not json")
    assert (bad.status, error_codes(bad)) == (400, ["MANIFEST_INVALID"])
    config = b"{}"
    v2.push_blob(name, config)
    wrong = v2.put_manifest(name, sha256(b"other"), image_manifest(config, []))
    assert (wrong.status, error_codes(wrong)) == (400, ["DIGEST_INVALID"])


def test_an_immutable_repository_refuses_to_move_a_tag(ecr: LocalECR, v2: V2) -> None:
    ecr.botocore_client().create_repository(
        repositoryName="t/immutable", imageTagMutability="IMMUTABLE"
    )
    _, first = push_image(v2, "t/immutable", "v1")
    config = b"{}"
    v2.push_blob("t/immutable", config)
    moved = v2.put_manifest("t/immutable", "v1", image_manifest(config, []))
    assert (moved.status, error_codes(moved)) == (400, ["TAG_INVALID"])
    assert v2("GET", "/v2/t/immutable/manifests/v1").headers["Docker-Content-Digest"] == first


def test_a_missing_repository_is_name_unknown_unless_created_on_push() -> None:
    with LocalECR() as ecr:
        v2 = V2(ecr.endpoint_url, ecr.login_password())
        refused = v2("POST", "/v2/t/absent/blobs/uploads/")
        assert (refused.status, error_codes(refused)) == (404, ["NAME_UNKNOWN"])
        assert error_codes(v2("GET", "/v2/t/absent/tags/list")) == ["NAME_UNKNOWN"]
        ecr.create_repositories_on_push = True
        assert v2("POST", "/v2/t/absent/blobs/uploads/").status == 202
        assert ecr.botocore_client().describe_repositories(repositoryNames=["t/absent"])


# -- discovery -------------------------------------------------------------------------


def test_tags_list_pages_with_n_last_and_link(v2: V2, request: pytest.FixtureRequest) -> None:
    name = repo(request)
    manifest, _ = push_image(v2, name, "c")
    for tag in ("a", "b", "d"):
        v2.put_manifest(name, tag, manifest)
    assert json.loads(v2("GET", f"/v2/{name}/tags/list").data)["tags"] == ["a", "b", "c", "d"]
    page = v2("GET", f"/v2/{name}/tags/list?n=2")
    assert json.loads(page.data) == {"name": name, "tags": ["a", "b"]}
    link = page.headers["Link"]
    assert link.endswith('>; rel="next"')
    following = v2("GET", link[1 : link.index(">")])
    assert json.loads(following.data)["tags"] == ["c", "d"]
    assert "Link" not in following.headers


def test_referrers_with_artifact_type_filter(v2: V2, request: pytest.FixtureRequest) -> None:
    name = repo(request)
    subject_bytes, subject = push_image(v2, name, "v1")
    descriptor = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_bytes)}
    _, sbom = push_image(v2, name, "sbom", artifactType="application/spdx+json",
                         subject=descriptor)  # fmt: skip
    _, sig = push_image(v2, name, "sig", artifactType="application/vnd.sig", subject=descriptor)
    every = json.loads(v2("GET", f"/v2/{name}/referrers/{subject}").data)
    assert every["mediaType"] == OCI_INDEX
    assert sorted(m["digest"] for m in every["manifests"]) == sorted([sbom, sig])
    only = v2("GET", f"/v2/{name}/referrers/{subject}?artifactType=application/vnd.sig")
    assert [m["digest"] for m in json.loads(only.data)["manifests"]] == [sig]
    assert only.headers["OCI-Filters-Applied"] == "artifactType"


# -- stats, faults, malformed requests ------------------------------------------------


def test_stats_and_faults_target_registry_operations(v2: V2) -> None:
    with LocalECR(create_repositories_on_push=True) as ecr:
        v2 = V2(ecr.endpoint_url, ecr.login_password())
        ecr.redirect_blobs = False
        digest = v2.push_blob("t/faults", b"blob")
        ecr.faults.fail_next("GetBlob", status=503, code="TOOMANYREQUESTS")
        failed = v2("GET", f"/v2/t/faults/blobs/{digest}")
        assert (failed.status, error_codes(failed)) == (503, ["TOOMANYREQUESTS"])
        assert v2("GET", f"/v2/t/faults/blobs/{digest}").data == b"blob"
        assert ecr.stats.registry_count("GetBlob") == 2
        assert ecr.stats.registry_count("GetBlob", status=503) == 1
        assert ecr.stats.faults("fail_next") == 1

        location = v2("POST", "/v2/t/faults/blobs/uploads/").headers["Location"]
        ecr.faults.fail_next("PatchUpload", drop_connection=True)
        with pytest.raises(Exception, match=r"(?i)connection|remote|protocol"):
            v2("PATCH", location, b"cut")
        assert ecr.stats.faults("drop_connection") == 1

        ecr.faults.add_latency(0.2, "PutManifest")
        started = time.monotonic()
        v2.put_manifest("t/faults", "v1", b"{}")
        assert time.monotonic() - started >= 0.2


def test_malformed_requests_get_400_not_a_dropped_connection(
    ecr: LocalECR, v2: V2, request: pytest.FixtureRequest
) -> None:
    name = repo(request)
    location = v2("POST", f"/v2/{name}/blobs/uploads/").headers["Location"]
    bad_length = v2("PATCH", location, b"x", {"Content-Length": "nope"})
    assert bad_length.status == 400
    with socket.create_connection(("127.0.0.1", int(ecr.endpoint_url.rsplit(":", 1)[1]))) as s:
        path = location.split(ecr.registry_host, 1)[1]
        s.sendall(
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {v2.headers['Authorization']}"
            "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".encode()
        )
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert v2("GET", "/v2/UPPER/tags/list").status == 400
    assert v2("GET", "/v2/no/such/route").status == 404


def test_a_large_body_refused_before_it_is_read_still_gets_its_answer(ecr: LocalECR) -> None:
    anonymous = V2(ecr.endpoint_url, None)
    before = ecr.stats.registry_count("PatchUpload", status=401)
    refused = anonymous("PATCH", "/v2/t/x/blobs/uploads/abc", os.urandom(8 * 1024 * 1024))
    assert (refused.status, error_codes(refused)) == (401, ["UNAUTHORIZED"])
    assert refused.headers["Connection"] == "close"
    assert ecr.stats.registry_count("PatchUpload", status=401) == before + 1
