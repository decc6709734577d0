"""One scripted push and pull against LocalECR and against distribution's reference registry.

Debian's ``docker-registry`` (distribution 2.8) runs on a loopback port with a
throwaway config; the same requests go to both, and what a client relies on must
match: statuses, error codes, and the headers the spec leaves no choice about.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from ecr_layers.testing import LocalECR

from .registry import ACCEPT, V2, error_codes, image_manifest, sha256, with_digest

NAME = "diff/app"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = bytes(range(256)) * 40


def registry_path() -> str:
    found = shutil.which("docker-registry")
    if found is None:
        why = "docker-registry is not installed (Debian/Ubuntu: apt-get install docker-registry)"
        if os.environ.get("ECR_LAYERS_REQUIRE_PEERS"):
            pytest.fail(f"{why}, and ECR_LAYERS_REQUIRE_PEERS says it must run")
        pytest.skip(why)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = registry_path()
    root = tmp_path_factory.mktemp("distribution")
    for _ in range(3):  # another process may take the port between probe and bind
        port = free_port()
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        with (root / "log").open("ab") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        if _wait_ready(url, process):
            try:
                yield url
            finally:
                process.terminate()
                process.wait(10)
            return
        process.kill()
        process.wait(10)
    pytest.fail(f"docker-registry did not start: {(root / 'log').read_text()[-2000:]}")


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if urllib3.request("GET", url + "/v2/", retries=False, timeout=1).status == 200:
                return True
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    return False


def script(v2: V2) -> list[tuple[str, Any]]:
    """Run the push and pull; return (step, what a client relies on) for each request."""
    steps: list[tuple[str, Any]] = []

    def seen(step: str, answer: urllib3.BaseHTTPResponse, *values: str, **more: Any) -> None:
        headers = {h: answer.headers.get(h) for h in values}
        steps.append((step, (answer.status, error_codes(answer), headers, more)))

    def has(answer: urllib3.BaseHTTPResponse, *names: str) -> dict[str, bool]:
        return {name: name in answer.headers for name in names}

    seen("ping", v2("GET", "/v2/"))
    # Chunked: POST, two PATCHes, a status check, PUT with the digest.
    started = v2("POST", f"/v2/{NAME}/blobs/uploads/")
    seen("start", started, "Range", **has(started, "Location", "Docker-Upload-UUID"))
    location = started.headers["Location"]
    first = v2("PATCH", location, LAYER[:4000], {"Content-Range": "0-3999",
               "Content-Type": "application/octet-stream"})  # fmt: skip
    seen("patch 1", first, "Range", **has(first, "Location", "Docker-Upload-UUID"))
    location = first.headers["Location"]
    second = v2("PATCH", location, LAYER[4000:], {"Content-Range": f"4000-{len(LAYER) - 1}",
                "Content-Type": "application/octet-stream"})  # fmt: skip
    seen("patch 2", second, "Range")
    location = second.headers["Location"]
    status = v2("GET", location)
    seen("upload status", status, "Range", **has(status, "Docker-Upload-UUID"))
    done = v2("PUT", with_digest(location, sha256(LAYER)))
    seen("finish", done, "Docker-Content-Digest", **has(done, "Location"))
    head = v2("HEAD", f"/v2/{NAME}/blobs/{sha256(LAYER)}")
    seen("head blob", head, "Docker-Content-Digest", "Content-Length")
    got = v2("GET", f"/v2/{NAME}/blobs/{sha256(LAYER)}", redirect=True)
    seen("get blob", got, same=got.data == LAYER)
    ranged = v2("GET", f"/v2/{NAME}/blobs/{sha256(LAYER)}", headers={"Range": "bytes=5-9"},
                redirect=True)  # fmt: skip
    seen("get range", ranged, "Content-Range", same=ranged.data == LAYER[5:10])
    # Whole: POST then one PUT carrying the bytes.
    config_start = v2("POST", f"/v2/{NAME}/blobs/uploads/")
    whole = v2("PUT", with_digest(config_start.headers["Location"], sha256(CONFIG)), CONFIG,
               {"Content-Type": "application/octet-stream"})  # fmt: skip
    seen("whole", whole, "Docker-Content-Digest")
    # A wrong digest.
    wrong_start = v2("POST", f"/v2/{NAME}/blobs/uploads/")
    wrong = v2("PUT", with_digest(wrong_start.headers["Location"], sha256(b"other")), b"bytes",
               {"Content-Type": "application/octet-stream"})  # fmt: skip
    seen("wrong digest", wrong)
    seen("unknown blob", v2("HEAD", f"/v2/{NAME}/blobs/{sha256(b'never')}"))
    # Manifests.
    missing = image_manifest(CONFIG, [b"never pushed"])
    seen("manifest naming a missing blob", v2.put_manifest(NAME, "broken", missing))
    manifest = image_manifest(CONFIG, [LAYER])
    put = v2.put_manifest(NAME, "v1", manifest)
    seen("put manifest", put, "Docker-Content-Digest", **has(put, "Location"))
    accept = {"Accept": ACCEPT}
    for step, reference in (("by tag", "v1"), ("by digest", sha256(manifest))):
        answer = v2("GET", f"/v2/{NAME}/manifests/{reference}", headers=accept)
        seen(f"get {step}", answer, "Docker-Content-Digest", "Content-Type",
             same=answer.data == manifest)  # fmt: skip
        seen(f"head {step}", v2("HEAD", f"/v2/{NAME}/manifests/{reference}", headers=accept),
             "Docker-Content-Digest", "Content-Length")  # fmt: skip
    seen("unknown tag", v2("GET", f"/v2/{NAME}/manifests/nope", headers=accept))
    v2.put_manifest(NAME, "v0", manifest)
    tags = v2("GET", f"/v2/{NAME}/tags/list")
    # Sorted here: the spec asks for lexical order, which distribution 2.8 does not keep.
    seen("tags/list", tags, name=tags.json()["name"], tags=sorted(tags.json()["tags"]))
    seen("unknown repository tags", v2("GET", "/v2/diff/absent/tags/list"))
    return steps


def test_localecr_answers_the_script_as_distribution_does(distribution: str) -> None:
    with LocalECR(create_repositories_on_push=True) as ecr:
        ours = script(V2(ecr.endpoint_url, ecr.login_password()))
    # distribution runs without auth: the Basic header is sent and ignored.
    theirs = script(V2(distribution, "unused"))
    assert [step for step, _ in ours] == [step for step, _ in theirs]
    differences = [(step, a, b) for (step, a), (_, b) in zip(ours, theirs, strict=True) if a != b]
    assert differences == []
    assert len(ours) > 20


def test_an_out_of_order_chunk_is_416(distribution: str) -> None:
    # Outside the script: distribution 2.8 answers 202 and takes the chunk, where the
    # spec says 416 (and later distributions answer 416).  The issue asks for the spec's.
    answers = []
    with LocalECR(create_repositories_on_push=True) as ecr:
        for v2 in (V2(ecr.endpoint_url, ecr.login_password()), V2(distribution, None)):
            location = v2("POST", f"/v2/{NAME}/blobs/uploads/").headers["Location"]
            location = v2("PATCH", location, b"a" * 10, {"Content-Range": "0-9"}).headers[
                "Location"
            ]
            answers.append(v2("PATCH", location, b"b" * 10, {"Content-Range": "20-29"}).status)
    assert answers[0] == 416
    assert answers[1] in (202, 416)
