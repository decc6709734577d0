"""The command line against a hostile environment: a broken AWS configuration, a
terminal that cannot show the output, and Ctrl-C at any moment (each found in a review).

Whatever happens, the command prints one line on stderr and exits with its documented
status: 2 for configuration it cannot use, 130 for Ctrl-C, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from botocore import exceptions as bce

import ecr_layers
from ecr_layers import _botocore, _cli
from ecr_layers.testing import LocalECR, random_layer, tar_layer

from .imaging import REPO, image_answer, serve_images
from .test_cli import code_of, one_line, run

#: The console script pip made for ``[project.scripts]``: what a user runs.
SCRIPT = pathlib.Path(sys.executable).with_name("ecr-layers")

# -- a broken AWS configuration is bad configuration: exit 2 -------------------------

#: Environments botocore refuses, by name: ``{garbage}`` and ``{binary}`` are files of
#: that kind, made for each test.
BROKEN: dict[str, dict[str, str]] = {
    "unparseable config file": {"AWS_CONFIG_FILE": "{garbage}"},
    "binary config file": {"AWS_CONFIG_FILE": "{binary}"},
    "unparseable credentials file": {"AWS_SHARED_CREDENTIALS_FILE": "{garbage}"},
    "bad defaults mode": {"AWS_DEFAULTS_MODE": "bogus"},
    "unknown profile": {"AWS_PROFILE": "no-such-profile"},
    "bad STS endpoints setting": {"AWS_STS_REGIONAL_ENDPOINTS": "bogus"},
    "bad IMDS endpoint mode": {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "bogus"},
    "bad checksum setting": {"AWS_REQUEST_CHECKSUM_CALCULATION": "bogus"},
}


@pytest.fixture
def broken(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Set the environment of one of `BROKEN`; return its name."""
    files = {"garbage": tmp_path / "garbage", "binary": tmp_path / "binary"}
    files["garbage"].write_text("garbage [[[\n=== not ini\n")
    files["binary"].write_bytes(b"[default]\nregion = us-east-1\n\xff\xfe\x00\n")
    name: str = request.param
    for variable, value in BROKEN[name].items():
        monkeypatch.setenv(variable, value.format_map(files))
    return name


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_is_a_configuration_error(local_ecr: LocalECR, broken: str) -> None:
    with pytest.raises(ecr_layers.ConfigurationError) as caught, ecr_layers.LayerClient() as client:
        client.get_layer_url(REPO, "sha256:" + "0" * 64)
    assert isinstance(caught.value.__cause__, bce.BotoCoreError), broken


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_is_a_configuration_error_for_asyncio_too(
    local_ecr: LocalECR, broken: str
) -> None:
    from ecr_layers.aio import AsyncLayerClient

    async def first_use() -> None:
        async with AsyncLayerClient() as client:  # its botocore client opens on first use
            await client.get_layer_url(REPO, "sha256:" + "0" * 64)

    with pytest.raises(ecr_layers.ConfigurationError) as caught:
        asyncio.run(first_use())
    assert isinstance(caught.value.__cause__, bce.BotoCoreError), broken


@pytest.mark.parametrize("broken", BROKEN, indirect=True)
def test_a_broken_configuration_exits_2_on_one_line(local_ecr: LocalECR, broken: str) -> None:
    out = run("url", REPO, "sha256:" + "0" * 64)
    assert out.returncode == code_of("ConfigurationError") == 2, (broken, out.stderr)
    assert one_line(out.stderr).startswith("ecr-layers: ConfigurationError: "), broken
    assert local_ecr.stats.count() == 0  # refused before anything was sent


def botocore_error_classes() -> list[type[bce.BotoCoreError]]:
    return [
        cls
        for _, cls in inspect.getmembers(bce, inspect.isclass)
        if issubclass(cls, bce.BotoCoreError)
    ]


class _AnyField(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


@pytest.mark.parametrize("cls", botocore_error_classes(), ids=lambda c: c.__name__)
def test_nothing_botocore_raises_while_a_client_is_made_is_an_unknown_error(
    cls: type[bce.BotoCoreError],
) -> None:
    # Making a client sends ECR nothing: what botocore refuses then is a setting it
    # cannot use (or the credentials', or the network's, which the error map knows).
    error = cls.__new__(cls)
    Exception.__init__(error, cls.fmt.format_map(_AnyField()))
    error.kwargs = {}
    with pytest.raises(ecr_layers.ECRError) as caught, _botocore.creating():
        raise error
    assert type(caught.value) is not ecr_layers.UnknownError
    assert caught.value.__cause__ is error


def test_the_class_list_is_botocores() -> None:
    names = {cls.__name__ for cls in botocore_error_classes()}
    assert {"ConfigParseError", "InvalidDefaultsMode", "ProfileNotFound"} <= names
    assert len(names) > 50


# -- the output never fails on the terminal's encoding --------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "ascii:strict", "latin-1:strict"])
def test_output_that_the_terminal_cannot_encode_is_escaped(
    local_ecr: LocalECR, tmp_path: pathlib.Path, encoding: str
) -> None:
    [digest] = local_ecr.push_image(REPO, [b"layer"])
    where = tmp_path / "ünïcødé ✓"
    where.mkdir()
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "download", REPO, digest, "-o", str(where)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    printed = out.stdout.decode(encoding.partition(":")[0])  # all the terminal could take
    assert "\\u2713" in printed  # the check mark, escaped: still readable, still one line
    assert len(printed.splitlines()) == 1


def test_an_error_line_that_the_terminal_cannot_encode_is_escaped(local_ecr: LocalECR) -> None:
    local_ecr.create_repository(REPO)
    local_ecr.faults.fail_next(
        "GetDownloadUrlForLayer", code="LayersNotFoundException", status=400, message="nö ✓"
    )
    env = dict(os.environ, PYTHONIOENCODING="ascii:strict")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "url", REPO, "sha256:" + "0" * 64],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == code_of("LayersNotFound"), out.stderr
    assert "n\\xf6 \\u2713" in one_line(out.stderr.decode("ascii"))


def test_the_demo_runs_on_an_ascii_terminal() -> None:
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "demo"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    assert "\\u2026" in out.stdout.decode("ascii")  # its ellipses, escaped


def test_a_file_name_that_is_not_utf8_is_printed_escaped(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    # A name of bytes that are no UTF-8 reaches Python as lone surrogates, which even a
    # UTF-8 terminal's strict encoder refuses.
    [digest] = local_ecr.push_image(REPO, [b"layer"])
    where = os.path.join(os.fsencode(tmp_path), b"bad\xff")
    os.mkdir(where)
    env = dict(os.environ, PYTHONIOENCODING="utf-8:strict")
    out = subprocess.run(
        [sys.executable, "-m", "ecr_layers", "download", REPO, digest, "-o", where],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, b""), out.stderr
    assert b"bad\\udcff" in out.stdout


# -- Ctrl-C at any moment: exit 130, one line -----------------------------------------


def sigint_held(pid: int) -> bool:
    """Whether process *pid*, running the console script, blocks SIGINT (Linux /proc)."""
    proc = pathlib.Path(f"/proc/{pid}")
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        # Between fork and exec the child is still Python's subprocess code, which
        # blocks signals of its own.
        if os.fsencode(SCRIPT) not in (proc / "cmdline").read_bytes().split(b"\0"):
            return False
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("SigBlk:"):
                # SIGINT alone: spawning a process (platform.processor() runs uname)
                # blocks every signal for a moment, and that is not the hold.
                return int(line.split()[1], 16) == 1 << (signal.SIGINT - 1)
    return False


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An endpoint that takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def interrupted(proc: subprocess.Popen[bytes]) -> tuple[float, bytes]:
    """Send *proc* Ctrl-C's signal; return how long it took to end, and its stderr."""
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return time.monotonic() - sent, err


needs_the_script = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the console script is not installed"
)
needs_proc = pytest.mark.skipif(
    not pathlib.Path("/proc/self/status").exists(), reason="reads SigBlk in Linux's /proc"
)


def started(endpoint: str) -> subprocess.Popen[bytes]:
    """``ecr-layers url`` against *endpoint*, from the moment its first statement ran."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = subprocess.Popen(
        [str(SCRIPT), "url", REPO, "sha256:" + "0" * 64, "--endpoint-url", endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # The console script's first statement holds Ctrl-C back.  Before it, the
    # interpreter is still starting, and Python's own rules apply.
    deadline = time.monotonic() + 20
    while not sigint_held(proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the console script never held SIGINT: {proc.communicate()}")
    return proc


@needs_the_script
@needs_proc
@pytest.mark.parametrize("moment", [0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0])
def test_ctrl_c_at_any_moment_from_the_first_statement_exits_130_on_one_line(
    silent_endpoint: str, moment: float
) -> None:
    proc = started(silent_endpoint)
    time.sleep(moment)  # the moment chosen for the Ctrl-C, not a wait for an event
    took, err = interrupted(proc)
    assert err.decode() == "ecr-layers: interrupted\n"
    assert proc.returncode == code_of("KeyboardInterrupt") == 130
    assert took < 3  # within a second, with room for a busy machine


@needs_the_script
@needs_proc
def test_ctrl_c_pressed_again_and_again_is_still_one_line(silent_endpoint: str) -> None:
    proc = started(silent_endpoint)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # an impatient finger
        time.sleep(0.002)
    _, err = proc.communicate(timeout=30)
    assert err.decode() == "ecr-layers: interrupted\n"
    assert proc.returncode == 130


def test_the_console_scripts_module_holds_ctrl_c_before_importing_the_package() -> None:
    code = (
        "import sys, _ecr_layers_cli\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ecr_layers', 'botocore'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout == "[]\n"  # importing it runs nothing of ours: main() holds, then imports


def test_main_leaves_ctrl_c_alone_in_a_program(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    assert _cli.main(["--version"]) == 0
    assert signal.getsignal(signal.SIGINT) is before
    assert capsys.readouterr().out.startswith("ecr-layers ")


def test_ctrl_c_ignored_by_the_parent_stays_ignored(silent_endpoint: str) -> None:
    # A background job of a script: the shell meant it to be immune to the terminal's Ctrl-C.
    command = ["url", REPO, "sha256:" + "0" * 64, "--endpoint-url", silent_endpoint]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ecr_layers", *command, "--region", "us-east-1"],
        stderr=subprocess.PIPE,
        env=dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        for _ in range(20):
            proc.send_signal(signal.SIGINT)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(0.05)  # still running
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert err == b""


STUBBORN = """
import sys, time
from ecr_layers import _cli

def stubborn(args):
    while True:
        try:
            print("started", flush=True)
            while True:
                time.sleep(60)
        except KeyboardInterrupt:
            pass  # a cleanup that never ends

_cli._COMMANDS["demo"] = stubborn
_cli.console(["demo"])
"""


def test_a_command_that_will_not_stop_is_ended_within_a_second() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started\n"
    took, err = interrupted(proc)
    assert err == b"ecr-layers: interrupted\n"
    assert proc.returncode == 130
    assert 0.5 < took < 3  # CtrlC's deadline, 0.9 s: the nudge at 0.5 s was swallowed too


# -- Ctrl-C ends a pull within a second, leaving nothing behind -------------------------


def staged(layout: pathlib.Path) -> list[pathlib.Path]:
    return list(layout.glob(".ecr-layers-staging/*"))


def start_pull(layout: pathlib.Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(SCRIPT), "pull", REPO, "v1", "-o", str(layout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "what the test waits for never happened"
        time.sleep(0.01)


@needs_the_script
def test_ctrl_c_in_the_middle_of_a_pulls_transfers_ends_it_within_a_second(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    local_ecr.push_layers_image(
        REPO, "v1", [random_layer(2 * 1024 * 1024, seed=n) for n in range(4)]
    )
    local_ecr.faults.bandwidth = 128 * 1024  # 16 s a layer
    layout = tmp_path / "layout"
    proc = start_pull(layout)
    wait_until(lambda: local_ecr.stats.blob_count() >= 4 or proc.poll() is not None)
    took, err = interrupted(proc)
    assert one_line(err.decode()) == "ecr-layers: interrupted"
    assert proc.returncode == 130
    assert took < 3
    assert not (layout / "index.json").exists()
    assert staged(layout) == []


@needs_the_script
def test_ctrl_c_while_a_pull_looks_up_its_urls_ends_it_within_a_second(
    local_ecr: LocalECR, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lookups run on a thread pool, waiting for answers nothing can cut short: once,
    # Ctrl-C waited 28 s for them.
    local_ecr.push_layers_image(REPO, "v1", [tar_layer({f"f{n}": b"x"}) for n in range(3)])
    arrived = threading.Event()
    latency = local_ecr.faults.latency

    def slow_lookups(operation: str) -> float:
        if operation != "GetDownloadUrlForLayer":
            return latency(operation)
        arrived.set()  # on the server side: a lookup is in flight
        return 30.0

    monkeypatch.setattr(local_ecr.faults, "latency", slow_lookups)
    layout = tmp_path / "layout"
    proc = start_pull(layout)
    wait_until(lambda: arrived.is_set() or proc.poll() is not None)
    took, err = interrupted(proc)
    assert one_line(err.decode()) == "ecr-layers: interrupted"
    assert proc.returncode == 130
    assert took < 3
    assert not (layout / "index.json").exists()
    assert staged(layout) == []


# -- deep JSON and wrong arguments: their typed errors, one line -----------------------


def test_a_deeply_nested_manifest_is_an_invalid_response_on_one_line(local_ecr: LocalECR) -> None:
    deep = '{"schemaVersion": 2, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    serve_images(local_ecr, image_answer(deep))
    out = run("image", REPO, "v1")
    assert out.returncode == code_of("InvalidResponse")
    assert one_line(out.stderr).startswith("ecr-layers: InvalidResponse")


def test_a_layout_with_a_deeply_nested_index_is_refused_on_one_line(
    local_ecr: LocalECR, tmp_path: pathlib.Path
) -> None:
    local_ecr.push_layers_image(REPO, "v1", [tar_layer({"a": b"a"})])
    (tmp_path / "index.json").write_text('{"manifests": [], "x": ' + "[" * 100_000 + "}")
    out = run("pull", REPO, "v1", "-o", str(tmp_path))
    assert out.returncode == code_of("DestinationError")
    assert one_line(out.stderr).startswith("ecr-layers: DestinationError")
