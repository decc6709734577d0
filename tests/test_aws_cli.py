"""LocalECR driven by the AWS CLI, a client this project did not write.

Skipped where no ``aws`` command exists; .ci/run installs one in its own virtual
environment (it pins its own botocore) and names it in ECR_LAYERS_AWS_CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import urllib3

from ecr_layers.testing import LocalECR, digest_of

AWS = os.environ.get("ECR_LAYERS_AWS_CLI") or shutil.which("aws")
pytestmark = pytest.mark.skipif(AWS is None, reason="the AWS CLI is not installed")


def aws(ecr: LocalECR, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert AWS is not None
    env = {**os.environ, **ecr.env(), "AWS_PAGER": ""}
    return subprocess.run(
        [AWS, "ecr", *args, "--endpoint-url", ecr.endpoint_url, "--output", "json"],
        env=env, capture_output=True, text=True, check=check, timeout=60,
    )  # fmt: skip


def upload(ecr: LocalECR, tmp: pathlib.Path, data: bytes) -> str:
    digest = digest_of(data)
    upload_id = json.loads(
        aws(ecr, "initiate-layer-upload", "--repository-name", "cli/app").stdout
    )["uploadId"]
    part = tmp / digest.replace(":", "-")
    part.write_bytes(data)
    aws(
        ecr, "upload-layer-part", "--repository-name", "cli/app", "--upload-id", upload_id,
        "--part-first-byte", "0", "--part-last-byte", str(len(data) - 1),
        "--layer-part-blob", f"fileb://{part}",
    )  # fmt: skip
    aws(
        ecr, "complete-layer-upload", "--repository-name", "cli/app", "--upload-id", upload_id,
        "--layer-digests", digest,
    )  # fmt: skip
    return digest


def test_the_aws_cli_pushes_and_gets_a_working_url(tmp_path: pathlib.Path) -> None:
    with LocalECR() as ecr:
        aws(ecr, "create-repository", "--repository-name", "cli/app")
        data = os.urandom(50_000)
        digest = upload(ecr, tmp_path, data)
        # The same three upload calls again would cost 3 s and check nothing new: the
        # config and an orphan layer are stored directly, as an upload leaves them.
        orphan = ecr.add_layer("cli/app", b"never referenced")
        config = b'{"os":"linux"}'
        config_digest = ecr.add_layer("cli/app", config)
        manifest = tmp_path / "manifest.json"
        manifest.write_text(
            json.dumps(
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
        )
        aws(
            ecr, "put-image", "--repository-name", "cli/app", "--image-tag", "v1",
            "--image-manifest", f"file://{manifest}",
        )  # fmt: skip
        out = aws(
            ecr, "get-download-url-for-layer", "--repository-name", "cli/app",
            "--layer-digest", digest,
        )  # fmt: skip
        url = json.loads(out.stdout)["downloadUrl"]
        body = urllib3.request("GET", url).data
        assert hashlib.sha256(body).hexdigest() == digest.split(":")[1]

        refused = aws(
            ecr, "get-download-url-for-layer", "--repository-name", "cli/app",
            "--layer-digest", orphan, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "LayerInaccessibleException" in refused.stderr
