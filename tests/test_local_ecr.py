"""LocalECR against clients this project did not write, and each fault knob observed."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest
import urllib3
from botocore.exceptions import ClientError

import ecr_layers
from ecr_layers.testing import LocalECR, digest_of

OP = "GetDownloadUrlForLayer"


@pytest.fixture
def ecr() -> Iterator[LocalECR]:
    with LocalECR() as server:
        yield server


def plain_boto3(ecr: LocalECR, secret: str | None = None) -> object:
    # Only the endpoint's URL and credentials: nothing else from ecr_layers.
    return boto3.client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region_name=ecr.region_name,
        aws_access_key_id=ecr.access_key_id,
        aws_secret_access_key=secret or ecr.secret_access_key,
    )


def test_conformance_with_plain_boto3(ecr: LocalECR) -> None:
    client = plain_boto3(ecr)
    repo = client.create_repository(repositoryName="conf/app")["repository"]  # type: ignore[attr-defined]
    assert repo["repositoryName"] == "conf/app"
    assert repo["registryId"] == ecr.registry_id

    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = client.initiate_layer_upload(repositoryName="conf/app")  # type: ignore[attr-defined]
    half = len(data) // 2
    for first, part in ((0, data[:half]), (half, data[half:])):
        client.upload_layer_part(  # type: ignore[attr-defined]
            repositoryName="conf/app",
            uploadId=upload["uploadId"],
            partFirstByte=first,
            partLastByte=first + len(part) - 1,
            layerPartBlob=part,
        )
    done = client.complete_layer_upload(  # type: ignore[attr-defined]
        repositoryName="conf/app", uploadId=upload["uploadId"], layerDigests=[digest]
    )
    assert done["layerDigest"] == digest

    # Uploaded but referenced by no image: inaccessible, through boto3's own modeled class.
    with pytest.raises(client.exceptions.LayerInaccessibleException):  # type: ignore[attr-defined]
        client.get_download_url_for_layer(repositoryName="conf/app", layerDigest=digest)  # type: ignore[attr-defined]

    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = digest_of(config)
    up = client.initiate_layer_upload(repositoryName="conf/app")  # type: ignore[attr-defined]
    client.upload_layer_part(  # type: ignore[attr-defined]
        repositoryName="conf/app",
        uploadId=up["uploadId"],
        partFirstByte=0,
        partLastByte=len(config) - 1,
        layerPartBlob=config,
    )
    client.complete_layer_upload(  # type: ignore[attr-defined]
        repositoryName="conf/app", uploadId=up["uploadId"], layerDigests=[config_digest]
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest,
                    "size": len(data),
                }
            ],
        }
    )
    put = client.put_image(repositoryName="conf/app", imageManifest=manifest, imageTag="v1")  # type: ignore[attr-defined]
    assert put["image"]["imageId"]["imageTag"] == "v1"

    got = client.batch_get_image(repositoryName="conf/app", imageIds=[{"imageTag": "v1"}])  # type: ignore[attr-defined]
    assert json.loads(got["images"][0]["imageManifest"])["layers"][0]["digest"] == digest
    avail = client.batch_check_layer_availability(  # type: ignore[attr-defined]
        repositoryName="conf/app", layerDigests=[digest, "sha256:" + "0" * 64]
    )
    assert avail["layers"][0]["layerSize"] == len(data)
    assert avail["failures"][0]["failureCode"] == "MissingLayerDigest"
    described = client.describe_repositories(repositoryNames=["conf/app"])  # type: ignore[attr-defined]
    assert described["repositories"][0]["repositoryName"] == "conf/app"

    url = client.get_download_url_for_layer(repositoryName="conf/app", layerDigest=digest)  # type: ignore[attr-defined]
    body = urllib3.request("GET", url["downloadUrl"]).data
    assert hashlib.sha256(body).hexdigest() == digest.split(":")[1]


def test_complete_upload_checks_the_claimed_digest(ecr: LocalECR) -> None:
    client = plain_boto3(ecr)
    client.create_repository(repositoryName="conf/app")  # type: ignore[attr-defined]
    up = client.initiate_layer_upload(repositoryName="conf/app")  # type: ignore[attr-defined]
    client.upload_layer_part(  # type: ignore[attr-defined]
        repositoryName="conf/app",
        uploadId=up["uploadId"],
        partFirstByte=0,
        partLastByte=2,
        layerPartBlob=b"abc",
    )
    with pytest.raises(client.exceptions.InvalidLayerException):  # type: ignore[attr-defined]
        client.complete_layer_upload(  # type: ignore[attr-defined]
            repositoryName="conf/app", uploadId=up["uploadId"], layerDigests=["sha256:" + "1" * 64]
        )


@pytest.mark.parametrize(
    ("secret", "code"),
    [("wrong-secret", "InvalidSignatureException")],
)
def test_a_request_signed_with_the_wrong_secret_is_refused(
    ecr: LocalECR, secret: str, code: str
) -> None:
    client = plain_boto3(ecr, secret=secret)
    with pytest.raises(ClientError) as info:
        client.describe_repositories()  # type: ignore[attr-defined]
    assert info.value.response["Error"]["Code"] == code


def test_unknown_key_and_unsigned_requests_are_refused(ecr: LocalECR) -> None:
    client = boto3.client(
        "ecr",
        endpoint_url=ecr.endpoint_url,
        region_name=ecr.region_name,
        aws_access_key_id="AKIAUNKNOWN000000000",
        aws_secret_access_key="x",
    )
    with pytest.raises(ClientError) as info:
        client.describe_repositories()
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    unsigned = urllib3.request(
        "POST",
        ecr.endpoint_url,
        body=b"{}",
        headers={
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    assert unsigned.status == 403
    assert json.loads(unsigned.data)["__type"] == "MissingAuthenticationTokenException"
    assert unsigned.headers["x-amzn-RequestId"]


def test_server_side_semantics(ecr: LocalECR) -> None:
    [digest] = ecr.push_image("team/app", [b"referenced"])
    orphan = ecr.add_layer("team/app", b"orphan")
    ecr.create_repository("team/other")
    ecr.add_pull_through_cache_rule("hub")
    client = plain_boto3(ecr)

    def code(**params: str) -> str:
        try:
            client.get_download_url_for_layer(**params)  # type: ignore[attr-defined]
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return "ok"

    assert code(repositoryName="team/app", layerDigest=digest) == "ok"
    assert code(repositoryName="team/app", layerDigest=orphan) == "LayerInaccessibleException"
    assert code(repositoryName="team/other", layerDigest=digest) == "LayersNotFoundException"
    assert code(repositoryName="team/nope", layerDigest=digest) == "RepositoryNotFoundException"
    assert code(repositoryName="team/app", layerDigest=digest, registryId="999999999999") == (
        "RepositoryNotFoundException"
    )
    assert code(repositoryName="hub/library/alpine", layerDigest=digest) == (
        "UnableToGetUpstreamLayerException"
    )
    # A client that skips local checks still meets the documented error from the server.
    assert code(repositoryName="Team/App", layerDigest=digest) == "InvalidParameterException"
    assert (
        code(repositoryName="team/app", layerDigest="not-a-digest") == "InvalidParameterException"
    )
    assert code(repositoryName="a" * 300, layerDigest=digest) == "InvalidParameterException"


def test_download_urls_behave_like_s3(ecr: LocalECR) -> None:
    data = os.urandom(10_000)
    [digest] = ecr.push_image("team/app", [data])
    url = ecr.client().get_layer_url("team/app", digest).download_url
    assert {"X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature"} <= {
        p.split("=")[0] for p in url.split("?")[1].split("&")
    }
    ranged = urllib3.request("GET", url, headers={"Range": "bytes=100-199"})
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert ranged.data == data[100:200]
    assert urllib3.request("GET", url, headers={"Range": "bytes=-10"}).data == data[-10:]
    assert urllib3.request("GET", url, headers={"Range": "bytes=99999-"}).status == 416

    tampered = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=9999")
    refused = urllib3.request("GET", tampered)
    assert refused.status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in refused.data

    ecr.faults.expire_next_urls(1)
    expired = ecr.client().get_layer_url("team/app", digest)
    assert expired.expired()
    answer = urllib3.request("GET", expired.download_url)
    assert answer.status == 403
    assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in answer.data
    assert ecr.stats.blob_count(digest, status=403) == 2


def test_expired_urls_show_in_stats(ecr: LocalECR) -> None:
    [digest] = ecr.push_image("team/app", [b"x"])
    client = ecr.client(retry_policy=ecr_layers.RetryPolicy(attempts=1))
    ecr.faults.expire_next_urls(2)
    # A refused call hands out no URL, so it leaves the fault for the next one.
    with pytest.raises(ecr_layers.LayersNotFound):
        client.get_layer_url("team/app", "sha256:" + "0" * 64)
    assert ecr.stats.faults("expired_url") == 0
    urls = [client.get_layer_url("team/app", digest) for _ in range(3)]
    assert [url.expired() for url in urls] == [True, True, False]
    assert ecr.stats.faults("expired_url") == ecr.stats.faults() == 2
    api = [(r.target, r.status, r.fault) for r in ecr.stats.records if r.kind == "api"]
    assert api[1:] == [(OP, 200, "expired_url")] * 2 + [(OP, 200, None)]


def test_url_lifetime_is_configurable() -> None:
    with LocalECR(url_expires=60) as ecr:
        [digest] = ecr.push_image("team/app", [b"x"])
        url = ecr.client().get_layer_url("team/app", digest)
        assert url.expires_at is not None
        left = url.expires_at - __import__("datetime").datetime.now(__import__("datetime").UTC)
        assert 50 < left.total_seconds() <= 60


def test_storage_dir_keeps_layers_on_disk(tmp_path: pathlib.Path) -> None:
    with LocalECR(storage_dir=tmp_path) as ecr:
        [digest] = ecr.push_image("team/app", [b"on disk"])
        assert (tmp_path / digest.replace(":", "-")).read_bytes() == b"on disk"
        url = ecr.client().get_layer_url("team/app", digest).download_url
        assert urllib3.request("GET", url, headers={"Range": "bytes=3-"}).data == b"disk"


# -- each fault knob, observed -------------------------------------------------------


def test_fail_next_and_its_record(ecr: LocalECR) -> None:
    [digest] = ecr.push_image("team/app", [b"x"])
    ecr.faults.fail_next(OP, 1, code="ThrottlingException", status=400)
    client = ecr.client(retry_policy=ecr_layers.RetryPolicy(attempts=1))
    with pytest.raises(ecr_layers.Throttled):
        client.get_layer_url("team/app", digest)
    assert ecr.stats.faults("fail_next") == 1
    assert client.get_layer_url("team/app", digest).layer_digest == digest


def test_latency(ecr: LocalECR) -> None:
    [digest] = ecr.push_image("team/app", [b"x"])
    client = ecr.client()
    client.get_layer_url("team/app", digest)
    ecr.faults.add_latency(0.3, OP)
    started = time.monotonic()
    client.get_layer_url("team/app", digest)
    assert time.monotonic() - started >= 0.3


def test_truncate_and_corrupt_blobs(ecr: LocalECR) -> None:
    data = os.urandom(100_000)
    [digest] = ecr.push_image("team/app", [data])
    url = ecr.client().get_layer_url("team/app", digest).download_url
    ecr.faults.truncate_next_blobs(1, after=1000)
    response = urllib3.request("GET", url, preload_content=False)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        response.read()
    ecr.faults.corrupt_next_blobs(1)
    corrupt = urllib3.request("GET", url).data
    assert len(corrupt) == len(data)
    assert corrupt != data
    assert urllib3.request("GET", url).data == data
    assert ecr.stats.faults("truncate") == 1
    assert ecr.stats.faults("corrupt") == 1


def test_fail_next_blobs_bandwidth_and_ignore_range(ecr: LocalECR) -> None:
    data = os.urandom(200_000)
    [digest] = ecr.push_image("team/app", [data])
    url = ecr.client().get_layer_url("team/app", digest).download_url
    ecr.faults.fail_next_blobs(1, status=503)
    failed = urllib3.request("GET", url)
    assert failed.status == 503
    assert b"<Code>SlowDown</Code>" in failed.data
    ecr.faults.bandwidth = 1_000_000
    started = time.monotonic()
    assert urllib3.request("GET", url).data == data
    assert time.monotonic() - started >= 0.15
    ecr.faults.bandwidth = None
    ecr.faults.ignore_range = True
    whole = urllib3.request("GET", url, headers={"Range": "bytes=10-19"})
    assert whole.status == 200
    assert whole.data == data
    assert ecr.stats.faults("fail_blob") == 1
    assert ecr.stats.faults("ignore_range") == 1


def test_seed_demo_pushes_an_image_whose_layers_download() -> None:
    ecr = LocalECR()
    # Before serving: seeding needs no running endpoint.
    repository, digests = ecr.seed_demo()
    with ecr:
        assert repository == "demo/app"
        sizes = []
        for digest in digests:
            url = ecr.client().get_layer_url(repository, digest).download_url
            body = urllib3.request("GET", url).data
            assert digest_of(body) == digest
            sizes.append(len(body))
        assert sizes == [64 * 1024, 1024 * 1024, 8 * 1024 * 1024]
        # v1 is a multi-platform index; the digests are its linux/amd64 manifest's layers.
        client = ecr.botocore_client()
        index = json.loads(
            client.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": "v1"}])[
                "images"
            ][0]["imageManifest"]
        )
        [amd64] = [m for m in index["manifests"] if m["platform"]["architecture"] == "amd64"]
        image = client.batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": amd64["digest"]}]
        )["images"][0]
        manifest = json.loads(image["imageManifest"])
        assert [layer["digest"] for layer in manifest["layers"]] == digests
        assert ecr.stats.blob_count(status=200) == 3
    assert len(set(digests)) == 3


def test_concurrent_clients(ecr: LocalECR) -> None:
    digests = ecr.push_image("team/app", [os.urandom(1000) for _ in range(40)])
    results = ecr.client().get_layer_urls("team/app", digests, max_workers=16)
    assert all(isinstance(r, ecr_layers.LayerUrl) for r in results.values())
    assert ecr.stats.count(OP, status=200) == 40


# -- the pytest plugin ------------------------------------------------------------------


def test_fixture_points_everything_at_the_endpoint(local_ecr: LocalECR) -> None:
    assert os.environ["AWS_ENDPOINT_URL_ECR"] == local_ecr.endpoint_url
    [digest] = local_ecr.push_image("team/app", [b"x"])
    # boto3 with no arguments at all reaches LocalECR.
    url = boto3.client("ecr").get_download_url_for_layer(
        repositoryName="team/app", layerDigest=digest
    )
    assert url["downloadUrl"].startswith(local_ecr.endpoint_url)


def test_fixture_restores_environment_and_default_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        import ecr_layers
        from ecr_layers.testing import LocalECR

        BEFORE = []

        def test_1_before():
            # A default client of the test session's own, on another endpoint.
            with LocalECR() as elsewhere:
                BEFORE.append(elsewhere.client())
            ecr_layers.set_default_client(BEFORE[0])

        def test_2_inside(local_ecr):
            [digest] = local_ecr.push_image("team/app", [b"x"])
            # The default client is rebuilt from the environment the fixture set.
            url = ecr_layers.get_layer_url("team/app", digest)
            assert url.download_url.startswith(local_ecr.endpoint_url)
            assert local_ecr.stats.count("GetDownloadUrlForLayer") == 1
            assert ecr_layers.default_client() is not BEFORE[0]
            assert os.environ["AWS_ENDPOINT_URL_ECR"] == local_ecr.endpoint_url

        def test_3_after():
            assert "AWS_ENDPOINT_URL_ECR" not in os.environ
            assert ecr_layers.default_client() is BEFORE[0]
        """
    )
    # In the order written: the three tests are one story (pytest-randomly would shuffle it).
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_serve_command_starts_an_endpoint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # The banner's wording is the CLI's business; its `export` lines are the contract.
        env: dict[str, str] = {}
        needed = {
            "AWS_ENDPOINT_URL_ECR",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        while not needed <= env.keys():
            line = proc.stdout.readline()
            assert line, "serve ended before printing its environment"
            if line.startswith("export "):
                [assignment] = shlex.split(line.removeprefix("export "))
                name, value = assignment.split("=", 1)
                env[name] = value
        client = boto3.client(
            "ecr",
            endpoint_url=env["AWS_ENDPOINT_URL_ECR"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_repository(repositoryName="served/app")
        names = [r["repositoryName"] for r in client.describe_repositories()["repositories"]]
        assert names == ["served/app"]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
