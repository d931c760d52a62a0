"""W8's load generator: N keep-alive HTTP clients on 127.0.0.1, bounded in requests and time.

    python bench/loadgen.py --port P --bodies BODIES.json --clients 8 --requests 2000
        [--warmup 200] [--seconds 30] [--pid SERVER_PID] [--path /invocations]

BODIES.json is a JSON list of request bodies (strings), sent in turn. The report (JSON on
stdout): requests, errors (a status other than 200, a connection failure, or an answer
without predictions), wall seconds, req/s, p50 and p99 latency, and the server's resident
memory (its process and all its descendants) after the warm-up and at the end. Standard
library only; it only ever connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # never anything else: the benchmark stays on this machine
HEADERS = {"Content-Type": "application/json"}


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_mb(pid: int | None) -> float | None:
    """Resident memory of *pid* and every descendant, in MB (None without a pid)."""
    if pid is None:
        return None
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        kb = next((int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:")), 0)
        total += kb
        todo += _children(current)
    return total / 1024.0


class _Load:
    """Shared state of one run: the bodies, a request budget, a deadline, the outcomes."""

    def __init__(self, bodies: list[bytes], budget: int, deadline: float, path: str) -> None:
        self.bodies, self.budget, self.deadline, self.path = bodies, budget, deadline, path
        self.lock = threading.Lock()
        self.sent = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.codes: dict[str, int] = {}

    def take(self) -> int | None:
        """The next request's index, or None when the budget or the time is spent."""
        with self.lock:
            if self.sent >= self.budget or time.monotonic() >= self.deadline:
                return None
            self.sent += 1
            return self.sent

    def record(self, seconds: float, code: str, ok: bool) -> None:
        """One request's outcome."""
        with self.lock:
            self.latencies.append(seconds)
            self.codes[code] = self.codes.get(code, 0) + 1
            self.errors += 0 if ok else 1


def _client(load: _Load, port: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    while (index := load.take()) is not None:
        body = load.bodies[index % len(load.bodies)]
        start = time.perf_counter()
        try:
            conn.request("POST", load.path, body=body, headers=HEADERS)
            response = conn.getresponse()
            payload = response.read()
            ok = response.status == 200 and b"predictions" in payload
            load.record(time.perf_counter() - start, str(response.status), ok)
        except (OSError, http.client.HTTPException) as exc:
            load.record(time.perf_counter() - start, type(exc).__name__, False)
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
    conn.close()


def run(port: int, bodies: list[bytes], clients: int, requests: int, seconds: float,
        path: str) -> tuple[_Load, float]:
    """*clients* threads sending up to *requests* requests within *seconds*."""
    load = _Load(bodies, requests, time.monotonic() + seconds, path)
    threads = [threading.Thread(target=_client, args=(load, port)) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return load, time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    """Warm up, measure, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument("--path", default="/invocations")
    args = parser.parse_args()
    bodies = [b.encode() for b in json.loads(args.bodies.read_text())]
    warm, _ = run(args.port, bodies, args.clients, args.warmup, args.seconds, args.path)
    rss_warm = tree_rss_mb(args.pid)
    load, wall = run(args.port, bodies, args.clients, args.requests, args.seconds, args.path)
    ms = [s * 1000.0 for s in load.latencies]
    report: dict[str, Any] = {
        "requests": len(ms), "errors": load.errors, "warmup_errors": warm.errors,
        "seconds": wall, "rps": len(ms) / wall if wall > 0 else 0.0,
        "p50_ms": statistics.median(ms) if ms else float("nan"),
        "p99_ms": _percentile(ms, 0.99), "codes": load.codes,
        "rss_warm_mb": rss_warm, "rss_end_mb": tree_rss_mb(args.pid),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
