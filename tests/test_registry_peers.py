"""LocalECR's registry API driven by clients none of us wrote: skopeo, oras-py, python-dxf.

What they push over ``/v2/`` is read back through the ECR API (``BatchGetImage``,
``GetDownloadUrlForLayer``, ecr-layers' ``get_image``/``pull_image``), and the other
way round.  One LocalECR for the module: each test pushes to repositories of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from ecr_layers.testing import LocalECR, random_layer

from .test_pull import skopeo_path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
PLATFORMS = ("linux/amd64", "linux/arm64/v8")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def peer(module: str) -> Any:
    """Import a peer client, or skip (a failure where CI requires the peers)."""
    try:
        return __import__(module)
    except ImportError:
        why = f"{module} is not installed (pip install -e '.[test]')"
        if os.environ.get("ECR_LAYERS_REQUIRE_PEERS"):
            pytest.fail(f"{why}, and ECR_LAYERS_REQUIRE_PEERS says it must run")
        pytest.skip(why)


@pytest.fixture(scope="module")
def ecr() -> Iterator[LocalECR]:
    with LocalECR(create_repositories_on_push=True) as server:
        yield server


def write_layout(root: pathlib.Path) -> dict[str, Any]:
    """Write an OCI image layout by hand: an index of two platforms' manifests, tagged v1.

    Returns the index's bytes and digest and each platform's layer.
    """
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    descriptors, layers = [], {}
    for n, platform in enumerate(PLATFORMS):
        os_name, arch, *variant = platform.split("/")
        layer = random_layer(4096 + n, seed=n)
        layers[platform] = layer
        config = json.dumps(
            {
                "architecture": arch,
                "os": os_name,
                **({"variant": variant[0]} if variant else {}),
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": blob(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": blob(layer.data),
                        "size": layer.size,
                    }
                ],
            }
        ).encode()
        platform_field = {"os": os_name, "architecture": arch}
        if variant:
            platform_field["variant"] = variant[0]
        descriptors.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": blob(manifest),
                "size": len(manifest),
                "platform": platform_field,
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    ).encode()
    index_digest = blob(index)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_INDEX,
                "digest": index_digest,
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(top))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"index": index, "digest": index_digest, "layers": layers}


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [skopeo_path(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_skopeo_copies_a_multi_platform_layout_in_and_back_out(
    ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    layout = write_layout(tmp_path / "layout")
    password = ecr.login_password()
    target = f"docker://{ecr.registry_host}/skopeo/app:v1"
    creds = f"AWS:{password}"
    skopeo(
        "copy", "--all", "--dest-tls-verify=false", "--dest-creds", creds,
        f"oci:{tmp_path / 'layout'}:v1", target,
    )  # fmt: skip

    # The ECR API sees the very index skopeo pushed, byte for byte.
    api = ecr.botocore_client()
    [image] = api.batch_get_image(repositoryName="skopeo/app", imageIds=[{"imageTag": "v1"}])[
        "images"
    ]
    assert image["imageId"]["imageDigest"] == layout["digest"]
    assert image["imageManifest"].encode() == layout["index"]
    assert image["imageManifestMediaType"] == OCI_INDEX

    # skopeo reads it back as a registry serves it.
    inspected = json.loads(
        skopeo("inspect", "--tls-verify=false", "--creds", creds, "--raw", target).stdout
    )
    assert [m["platform"]["architecture"] for m in inspected["manifests"]] == ["amd64", "arm64"]

    # ecr-layers reads each platform over the ECR API, verified, into an OCI layout.
    with ecr.client() as client:
        for platform in PLATFORMS:
            got = client.get_image("skopeo/app", "v1", platform=platform)
            assert got.index_digest == layout["digest"]
            assert [layer.digest for layer in got.layers] == [layout["layers"][platform].digest]
        pulled = client.pull_image(
            "skopeo/app", "v1", tmp_path / "pulled", platform="linux/arm64/v8"
        )
    arm = layout["layers"]["linux/arm64/v8"]
    assert (tmp_path / "pulled" / "blobs" / "sha256" / arm.digest.split(":")[1]).read_bytes() == (
        arm.data
    )
    assert pulled.platform == "linux/arm64/v8"

    # And skopeo copies one platform back out to a directory, its digests verified.
    skopeo(
        "copy", "--override-arch", "arm64", "--override-variant", "v8",
        "--src-tls-verify=false", "--src-creds", creds, target, f"dir:{tmp_path / 'out'}",
    )  # fmt: skip
    out = json.loads((tmp_path / "out" / "manifest.json").read_bytes())
    [layer] = out["layers"]
    assert layer["digest"] == arm.digest
    assert (tmp_path / "out" / arm.digest.split(":")[1]).read_bytes() == arm.data


def test_skopeo_inspects_the_seeded_demo_image(ecr: LocalECR) -> None:
    seeded = ecr.seed_demo_image()
    before = ecr.stats.registry_count("GetManifest", status=200)
    reference = f"docker://{ecr.registry_host}/{seeded.repository_name}:{seeded.tag}"
    shown = json.loads(
        skopeo(
            "inspect", "--tls-verify=false", "--creds", f"AWS:{ecr.login_password()}", reference
        ).stdout
    )
    assert shown["Layers"] == [
        layer.digest for layer in seeded.manifests[shown["Os"] + "/" + shown["Architecture"]].layers
    ]
    assert ecr.stats.registry_count("GetManifest", status=200) > before


def test_oras_pushes_and_pulls_an_artifact(
    ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oras = peer("oras.client")
    monkeypatch.chdir(tmp_path)
    content = os.urandom(3000)
    pathlib.Path("artifact.bin").write_bytes(content)
    client = oras.client.OrasClient(hostname=ecr.registry_host, insecure=True, auth_backend="basic")
    client.login("AWS", ecr.login_password(), hostname=ecr.registry_host)
    target = f"{ecr.registry_host}/oras/artifact:v1"
    chunks_before = ecr.stats.registry_count("PatchUpload", status=202)
    pushed = client.push(target=target, files=["artifact.bin"], do_chunked=True, chunk_size=1024)
    assert pushed.status_code == 201
    assert ecr.stats.registry_count("PatchUpload", status=202) - chunks_before == 3

    [path] = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert pathlib.Path(path).read_bytes() == content
    # The artifact's blob is a layer to the ECR API too.
    url = ecr.client().get_layer_url("oras/artifact", sha256(content))
    assert url.layer_digest == sha256(content)


def test_dxf_pushes_and_pulls_a_blob(ecr: LocalECR) -> None:
    dxf = peer("dxf")
    password = ecr.login_password()
    token = __import__("base64").b64encode(f"AWS:{password}".encode()).decode()

    def auth(client: Any, response: Any) -> None:
        # python-dxf refuses Basic auth over plain HTTP (authenticate() raises), so the
        # header goes in directly; everything else is python-dxf's own.
        client._headers = {"Authorization": f"Basic {token}"}

    client = dxf.DXF(ecr.registry_host, "dxf/blobs", auth=auth, insecure=True)
    data = os.urandom(5000)
    digest = client.push_blob(data=iter([data[:2000], data[2000:]]), digest=sha256(data))
    assert digest == sha256(data)
    assert b"".join(client.pull_blob(digest)) == data
    # The blob is stored once, and reachable as a layer once an image names it.
    config = b"{}"
    client.push_blob(data=iter([config]), digest=sha256(config))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest,
                    "size": len(data),
                }
            ],
        }
    )
    client.set_manifest("v1", manifest)
    url = ecr.client().get_layer_url("dxf/blobs", digest)
    import urllib3

    assert urllib3.request("GET", url.download_url).data == data


def test_the_docs_shell_commands_run_as_written(ecr: LocalECR, tmp_path: pathlib.Path) -> None:
    import re
    import shutil

    page = (pathlib.Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    section = page.split("## Push with skopeo, oras or docker", 1)[1].split("\n## ", 1)[0]
    [script] = re.findall(r"^```sh\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    aws = os.environ.get("ECR_LAYERS_AWS_CLI") or shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed")
    skopeo_path()
    layout = write_layout(tmp_path / "layout")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "aws").symlink_to(aws)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(ecr.env(), AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    done = subprocess.run(
        ["sh", "-ec", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert layout["digest"] in done.stdout.splitlines()
    copied = json.loads((tmp_path / "out" / "manifest.json").read_bytes())
    [layer] = copied["layers"]
    assert layer["digest"] in {layer.digest for layer in layout["layers"].values()}
    assert (
        sha256((tmp_path / "out" / layer["digest"].split(":")[1]).read_bytes()) == layer["digest"]
    )
