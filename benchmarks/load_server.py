"""Load test of ``scrubber serve`` on loopback: N uploads from C concurrent clients.

Starts the server in this process (Uvicorn on a free loopback port, the shipped models), then C
client threads post small synthetic CT instances (a few carrying burned-in text) to
``POST /v1/scrub``. A 429 (queue full) or 503 is retried after its Retry-After, as a well-behaved
client would; every upload must end in a 200 or a 202. Prints and optionally writes: requests,
retries, status counts, latency p50/p90/p99 (from first send to final answer) and throughput.

Usage::

    python benchmarks/load_server.py [--requests 500] [--clients 8] [--workers 2]
        [--queue-size 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from scrubber.deid import DeidConfig  # noqa: E402
from scrubber.samples import build_instance, sample_patients  # noqa: E402
from scrubber.server import ServerSettings, TokenBook, create_app  # noqa: E402
from tests.burned_in import ultrasound_with_banner  # noqa: E402

TOKEN = "load-test-submitter-token-0123456789"


def _bodies(count: int) -> list[bytes]:
    """Distinct instances: CT slices of several patients, every tenth an ultrasound banner."""
    bodies = []
    patients = sample_patients(8, seed=11)
    for index in range(count):
        if index % 10 == 9:
            ds = ultrasound_with_banner(f"PATIENT{index} LOAD", f"{index:07d}")
        else:
            ds = build_instance(patients[index % 8], modality="CT", instance_number=index + 1)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        bodies.append(buffer.getvalue())
    return bodies


def _serve(settings: ServerSettings) -> tuple[str, uvicorn.Server, threading.Thread]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return base, server, thread
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def _send(base: str, body: bytes) -> tuple[int, int, float]:
    """Post until answered 200/202 (retrying 429/503); return status, retries and seconds."""
    start, retries = time.perf_counter(), 0
    while True:
        request = urllib.request.Request(
            base + "/v1/scrub",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/dicom"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                response.read()
                return response.status, retries, time.perf_counter() - start
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 503):
                retries += 1
                time.sleep(float(exc.headers.get("Retry-After", "1")))
                continue
            return exc.code, retries, time.perf_counter() - start


def run(requests: int, clients: int, workers: int, queue_size: int) -> dict[str, Any]:
    """Run the load test and return its figures."""
    bodies = _bodies(requests)
    with tempfile.TemporaryDirectory(prefix="load-server-") as tmp:
        work = Path(tmp)
        settings = ServerSettings(
            out=work / "out",
            quarantine=work / "out.quarantine",
            spool=work / "spool",
            deid=DeidConfig(project="LOAD"),
            secret=b"load-test-secret-0123456789abcdef",
            key_path=work / "key.sqlite",
            tokens=TokenBook.parse(f"submitter:{TOKEN}"),
            workers=workers,
            queue_size=queue_size,
        )
        base, server, thread = _serve(settings)
        results: list[tuple[int, int, float]] = []
        lock = threading.Lock()
        cursor = iter(range(requests))

        def client() -> None:
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                outcome = _send(base, bodies[index])
                with lock:
                    results.append(outcome)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        server.should_exit = True
        thread.join(timeout=30)
    latencies = sorted(r[2] for r in results)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": requests,
        "answered": len(results),
        "statuses": dict(Counter(r[0] for r in results)),
        "retries": sum(r[1] for r in results),
        "p50_s": round(quantiles[49], 3),
        "p90_s": round(quantiles[89], 3),
        "p99_s": round(quantiles[98], 3),
        "seconds": round(elapsed, 1),
        "requests_per_second": round(len(results) / elapsed, 2),
        "clients": clients,
        "workers": workers,
        "queue_size": queue_size,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
    }


def main(argv: list[str] | None = None) -> int:
    """Run from the command line; exit 1 if any upload was lost or failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures = run(args.requests, args.clients, args.workers, args.queue_size)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["answered"] == args.requests and set(figures["statuses"]) <= {200, 202}
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
