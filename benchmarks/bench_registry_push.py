"""LocalECR's memory while a large layer is pushed over the registry API in chunks.

``ecr-layers serve --create-on-push`` runs in a child process; this process pushes
--mib MiB of random bytes as one blob, in PATCHes of --chunk MiB (each sent from a
reused buffer, so the client holds one chunk), then PUTs the digest and checks the
server answered with it.  The server's RSS is read from /proc before the push (after
a small push has warmed it up) and its peak (VmHWM, reset first) after.

Run: python -m benchmarks.bench_registry_push [--mib 1024 --chunk 16]
Target: the server's peak RSS grows by <= 64 MiB for a 1 GiB push.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import urllib3

from ._common import MIB, ecr_client, server_process


def status_mib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split(key + ":")[1].split()[0]) / 1024


def push(http: urllib3.PoolManager, base: str, auth: str, chunk: bytes, count: int) -> str:
    """Push *count* copies of *chunk* as one blob in as many PATCHes; return its digest."""
    headers = {"Authorization": auth}
    started = http.request("POST", f"{base}/v2/bench/big/blobs/uploads/", headers=headers)
    assert started.status == 202, started.data
    location = started.headers["Location"]
    digest = hashlib.sha256()
    for n in range(count):
        first = n * len(chunk)
        answer = http.request(
            "PATCH",
            location,
            body=chunk,
            headers={**headers, "Content-Range": f"{first}-{first + len(chunk) - 1}"},
        )
        assert answer.status == 202, answer.data
        digest.update(chunk)
    expected = f"sha256:{digest.hexdigest()}"
    done = http.request("PUT", f"{location}?digest={expected}", headers=headers)
    assert done.status == 201, done.data
    assert done.headers["Docker-Content-Digest"] == expected
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=16, help="MiB per PATCH")
    args = parser.parse_args()
    chunk = os.urandom(args.chunk * MIB)
    with server_process("--create-on-push") as server:
        [data] = ecr_client(server).get_authorization_token()["authorizationData"]
        auth = f"Basic {data['authorizationToken']}"
        http = urllib3.PoolManager(retries=False, timeout=120)
        # A small push first: imports and first-use allocations, outside the measurement.
        push(http, server.endpoint_url, auth, chunk[: MIB // 4], 2)
        with open(f"/proc/{server.pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        before = status_mib(server.pid, "VmRSS")
        started = time.perf_counter()
        push(http, server.endpoint_url, auth, chunk, args.mib // args.chunk)
        seconds = time.perf_counter() - started
        peak = status_mib(server.pid, "VmHWM")
    pushed = args.mib // args.chunk * args.chunk
    print(f"pushed {pushed} MiB in {args.chunk} MiB PATCHes in {seconds:.1f} s "
          f"({pushed / seconds:.0f} MiB/s)")  # fmt: skip
    print(f"server RSS before {before:.1f} MiB, peak during {peak:.1f} MiB: "
          f"growth {peak - before:.1f} MiB (target <= 64 MiB)")  # fmt: skip


if __name__ == "__main__":
    main()
