"""``ecr-layers serve`` and ``ecr-layers demo``: what a newcomer sees, and their failures."""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from ecr_layers import _cli, _demo
from ecr_layers.testing import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, LocalECR

from .test_cli import code_of, never_serve, one_line
from .test_pull import skopeo_path

# -- serve: failures ------------------------------------------------------------------


def test_serve_on_a_port_in_use_is_a_local_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status = _cli.main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert status == code_of("OSError") == 7
    line = one_line(err)
    assert "EADDRINUSE" in line
    assert f"127.0.0.1:{port}" in line


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_on_an_impossible_port_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    never_serve(monkeypatch)
    status = _cli.main(["serve", "--port", port])
    assert status == code_of("UsageError") == 2
    assert "--port" in one_line(capsys.readouterr().err)


def test_serve_on_an_unusable_host_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # An IPv6 literal for an IPv4 server fails in getaddrinfo, without asking any DNS.
    status = _cli.main(["serve", "--host", "::1"])
    assert status == 2
    assert "--host" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("storage", ["/proc/x", "a file"])
def test_serve_with_an_unusable_storage_dir_is_a_local_error(
    tmp_path: pathlib.Path, storage: str
) -> None:
    if storage == "/proc/x" and not pathlib.Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    if storage == "a file":
        (tmp_path / "file").write_bytes(b"")
        storage = str(tmp_path / "file")
    # In a child process: the listening socket it had already opened goes with it.
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "serve", "--storage-dir", storage],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == code_of("OSError") == 7
    assert "--storage-dir" in one_line(out.stderr)
    assert out.stdout == ""


# -- serve: what it prints, and that it works at once -----------------------------------


@pytest.fixture
def served(
    tmp_path: pathlib.Path, sigint_reaches_children: None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``ecr-layers serve --seed`` in a child process, and its banner's lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", "serve", "--seed", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    stdout = proc.stdout
    received: queue.Queue[str] = queue.Queue()
    # A thread reads, so that a banner that never ends fails the test instead of hanging it.

    def read() -> None:
        for line in stdout:
            received.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    lines: list[str] = []
    while not (lines and lines[-1].startswith("ecr-layers cat ")):  # the banner's last
        try:
            lines.append(received.get(timeout=30).rstrip("\n"))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"serve printed no complete banner: {lines}")
    try:
        yield proc, lines
    finally:
        # SIGTERM, which serve answers as it answers Ctrl-C, so LocalECR removes its
        # storage directory; SIGKILL left one in the temporary directory per run.
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(10)  # ends at EOF; then the pipes can close under nobody
        stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def test_serve_prints_endpoint_region_and_credentials(
    served: tuple[subprocess.Popen[str], list[str]],
) -> None:
    proc, lines = served
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    assert exports["AWS_ACCESS_KEY_ID"] == DEFAULT_ACCESS_KEY_ID
    assert exports["AWS_SECRET_ACCESS_KEY"] == DEFAULT_SECRET_ACCESS_KEY
    assert exports["AWS_DEFAULT_REGION"] == exports["AWS_REGION"]
    endpoint = exports["AWS_ENDPOINT_URL_ECR"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", endpoint)
    assert endpoint in lines[0]
    assert exports["AWS_REGION"] in lines[0]
    # Ctrl-C is how serve is meant to end.
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == ""


def test_serve_seed_prints_commands_that_work_as_pasted(
    served: tuple[subprocess.Popen[str], list[str]], tmp_path: pathlib.Path
) -> None:
    _, lines = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    digests = re.findall(
        r"^#\s+linux/amd64\s+(sha256:[0-9a-f]{64})$", "\n".join(lines), re.MULTILINE
    )
    assert len(digests) >= 2
    assert any("demo/app" in line for line in lines if line.startswith("#"))
    # Exactly what a newcomer would paste: the export lines, then the examples.
    script = "\n".join(line for line in lines if not line.startswith("#"))
    commands = [line for line in lines if line.startswith("ecr-layers ")]
    assert [c.split()[1] for c in commands] == ["image", "pull", "url", "download", "export", "cat"]
    assert [line.split()[0] for line in lines if line.startswith(("aws", "skopeo"))] == [
        "aws",
        "skopeo",
    ]
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "ecr-layers").write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ecr_layers "$@"\n'
    )
    (shim / "ecr-layers").chmod(0o755)
    # The login line needs the AWS CLI (CI installs one) and skopeo, as a user's would.
    skopeo_path()
    aws = os.environ.get("ECR_LAYERS_AWS_CLI") or shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed: the banner's login line cannot run")
    (shim / "aws").symlink_to(aws)
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        ["sh", "-ec", script], capture_output=True, text=True, env=env, cwd=work, timeout=120,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    login, *rest = out.stdout.splitlines()
    assert login == "Login Succeeded!"
    # skopeo's JSON, then ecr-layers' lines.
    first = rest.index("image      demo/app:v1")
    inspected = json.loads("\n".join(rest[:first]))
    assert inspected["Layers"] == digests
    *_, pulled, url, path, exported, size = rest[first:]
    assert pulled.endswith(" oci:./layout:v1")
    assert (work / "layout" / "index.json").is_file()
    assert url.startswith("http://127.0.0.1:")
    downloaded = work / pathlib.Path(path).name
    assert downloaded.is_file()
    assert downloaded.name == digests[-1].replace(":", "-")
    # The image's root, then one file of it read alone: the same bytes.
    assert exported.endswith(f" {work / 'rootfs'}")
    base = (work / "rootfs" / "base.bin").read_bytes()
    assert base
    assert int(size) == len(base)


# -- demo -----------------------------------------------------------------------------


def test_demo_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "demo"], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert "verified" in out.stdout
    assert "caught LayersNotFound" in out.stdout
    assert "caught LayerInaccessible" in out.stdout
    assert "X-Amz-Signature" not in out.stdout


def test_demo_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli.main(["demo", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_demo_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert _demo.run() == 0
    out = capsys.readouterr().out
    # Column headings over the layer table.
    assert re.search(r"LAYER\s+BYTES\s+SHA-256\s+TIME\s+BLOB REQUESTS\s+URL EXPIRES", out)
    # What input caused each caught error, right above it.
    assert re.search(r"input: an unknown digest.*all zeros.*\n\s+caught LayersNotFound", out)
    assert re.search(r"input: .*no image references it.*\n\s+caught LayerInaccessible", out)


def test_the_demos_stated_counts_are_the_servers(
    local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _demo.run(ecr=local_ecr) == 0
    out = capsys.readouterr().out
    lookups = re.search(
        r"(\d+) GetDownloadUrlForLayer = (\d+) by get_layer_url.*\n\s+\+ (\d+) inside "
        r"download_layer.*\n\s+\+ (\d+) for the errors",
        out,
    )
    assert lookups is not None, out
    total, *parts = map(int, lookups.groups())
    pulls = re.findall(
        r"^\s+(?:first|second)\s+(\d+) BatchGetImage, (\d+) GetDownloadUrlForLayer, "
        r"(\d+) blob downloads  = ",
        out,
        re.M,
    )
    assert len(pulls) == 2, out
    pulled = [sum(int(p[i]) for p in pulls) for i in range(3)]
    # get_image's two calls, then each pull's.
    assert local_ecr.stats.count("BatchGetImage") == 2 + pulled[0]
    assert total + pulled[1] == local_ecr.stats.count("GetDownloadUrlForLayer")
    assert total == sum(parts)
    assert parts[-1] == 2  # the two error demonstrations
    blobs = re.search(r"(\d+) blob downloads = ([\d +]+),", out)
    assert blobs is not None, out
    per_layer = [int(n) for n in blobs[2].split("+")]
    assert int(blobs[1]) + pulled[2] == local_ecr.stats.blob_count()
    assert int(blobs[1]) == sum(per_layer)
    # And the table's column says the same, row by row.
    rows = re.findall(r"^\s+sha256:\S+\s+[\d,]+\s+verified\s+[\d.]+ ms\s+(\d+)\s", out, re.M)
    assert [int(n) for n in rows] == per_layer
    assert len(per_layer) == parts[0]  # one get_layer_url per layer


def test_the_demo_notices_a_retry(local_ecr: LocalECR, capsys: pytest.CaptureFixture[str]) -> None:
    # If a lookup is retried, the stated count must not pretend the demo asked for it.
    local_ecr.faults.fail_next("GetDownloadUrlForLayer", 1)
    assert _demo.run(ecr=local_ecr) == 0
    out = capsys.readouterr().out
    assert "GetDownloadUrlForLayer ≠" in out
    assert "1 more than the demo asked for" in out


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_sigint_or_sigterm_even_started_ignoring_sigint(
    stop: signal.Signals,
) -> None:
    # As a non-interactive shell starts a background job: SIGINT ignored, inherited.
    # (The cause of the paired serve / Ctrl-C failures of issue 15: serve kept the
    # ignored SIGINT, and a `kill -INT` did nothing.)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ecr_layers", "serve", "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert proc.stdout is not None
        while not proc.stdout.readline().startswith("# (serve --seed"):  # the banner's last
            assert proc.poll() is None, "serve ended before its banner did"
        proc.send_signal(stop)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
