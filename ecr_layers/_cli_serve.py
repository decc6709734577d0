"""
``ecr-layers serve``: run a LocalECR until Ctrl-C, after printing the lines that point
another shell at it.  Errors and exit statuses are `ecr_layers._cli`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import socket
from typing import TYPE_CHECKING

from ._cli_output import UsageError

if TYPE_CHECKING:
    from .testing import LocalECR, SeededImage


def serve(args: argparse.Namespace) -> int:
    # Looked up at run time, on the package: tests replace it there.
    from .testing import LocalECR

    try:
        ecr = LocalECR(
            host=args.host,
            port=args.port,
            storage_dir=args.storage_dir,
            create_repositories_on_push=args.create_on_push,
        )
    except socket.gaierror as exc:
        raise UsageError(
            f"ecr-layers serve: error: argument --host: cannot listen on {args.host!r}: "
            f"{exc.strerror}"
        ) from exc
    except OSError as exc:
        if exc.filename is None:
            exc.add_note(f"cannot listen on {args.host}:{args.port}")
        else:
            exc.add_note("cannot use --storage-dir")
        raise
    if args.latency:
        ecr.faults.add_latency(args.latency)
    ecr.faults.bandwidth = args.bandwidth
    # Ctrl-C is how serve is meant to end, whenever it comes: exit 0.  Also when serve
    # was started with SIGINT ignored (a shell starts its background jobs so, and a
    # script's `kill -INT` would then do nothing), and on SIGTERM, a supervisor's stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt), ecr:
        _print_banner(ecr, ecr.seed_demo_image() if args.seed else None)
        _wait_for_a_signal()
    return 0


def _wait_for_a_signal() -> None:
    """Block until a signal comes; SIGINT's and SIGTERM's handlers raise KeyboardInterrupt.

    Not time.sleep(): a signal that lands after Python's last check and before the
    sleep begins does not interrupt it, and its handler would run only when the sleep
    ends (an hour later).  The wakeup fd receives a byte for every signal, whenever
    it comes, so select() returns and the handler runs at once.
    """
    import select

    readable, writable = socket.socketpair()
    with readable, writable:
        writable.setblocking(False)
        previous = signal.set_wakeup_fd(writable.fileno())
        try:
            while True:
                select.select([readable], [], [])
                readable.recv(64)
        finally:
            signal.set_wakeup_fd(previous)


def _print_banner(ecr: LocalECR, seeded: SeededImage | None) -> None:
    def say(text: str = "") -> None:
        print(text, flush=True)

    say(f"# LocalECR serving on {ecr.endpoint_url}, region {ecr.region_name}; Ctrl-C stops it.")
    say("# To use it from another shell, paste these lines (LocalECR's fixed test")
    say("# credentials, not secrets; requests signed with any others are refused):")
    for name, value in ecr.env().items():
        say(f"export {name}={shlex.quote(value)}")
    host = ecr.registry_host
    say(f"# The registry API (skopeo, oras, docker) is {host}, plain HTTP; to log in")
    say("# (with the AWS CLI, as to ECR; docker needs it listed as an insecure registry):")
    say(
        "aws ecr get-login-password | "
        f"skopeo login --tls-verify=false --username AWS --password-stdin {host}"
    )
    if seeded is None:
        say("# (serve --seed also pushes a demo image to try the commands on)")
        return
    repository, tag = shlex.quote(seeded.repository_name), seeded.tag or "latest"
    say(
        f"# Seeded {seeded.repository_name}:{tag}, an index of {', '.join(seeded.manifests)}; "
        "their layers:"
    )
    for platform, manifest in seeded.manifests.items():
        for layer in manifest.layers:
            say(f"#   {platform:<16} {layer.digest}")
    layers = next(iter(seeded.manifests.values())).layers
    digests = [layer.digest for layer in layers]
    # A file of the base layer, which every platform's manifest shares: whichever one
    # `cat` picks for this machine has it.
    base_file = shlex.quote("/" + layers[0].files[0])
    say("# Then try:")
    say(f"skopeo inspect --tls-verify=false docker://{ecr.registry_host}/{repository}:{tag}")
    say(f"ecr-layers image {repository} {tag}")
    say(f"ecr-layers pull {repository} {tag} -o ./layout")
    say(f"ecr-layers url {repository} {digests[0]}")
    say(f"ecr-layers download {repository} {digests[-1]} -o .")
    say(f"ecr-layers export {repository} {tag} ./rootfs")
    say(f"ecr-layers cat {repository} {tag} {base_file} | wc -c")
