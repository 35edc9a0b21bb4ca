"""`make bench` (load): tokens per second from `tokenmint serve` on the embedded backend.

Starts the real server on 127.0.0.1 (a fresh data dir), creates a client_secret_basic client with
the CLI, and drives POST /token from a fixed number of keep-alive connections (one thread each,
http.client) for a fixed time, after a warm-up. Reports tokens/s, latency percentiles, errors, the
server's own CPU per token (from /proc), and the bytes it logs per token (its audit and metric
lines: what a Lambda function would send to CloudWatch Logs), as a Markdown table.

The load generator runs on the same machine as the server: on a small machine both compete for
the same cores, so read the figures as a lower bound and compare runs on one machine only.

    python infra/bench/load.py [--connections 8 32] [--seconds 10] [--runs 3] [--json FILE]

Each concurrency runs ``--runs`` times, interleaved (the machine's drift weighs on all alike); the
table shows the median run's figures per concurrency (errors: the sum over all runs).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

RESOURCE = "https://api.example.com/demo"  # seeded on an empty data dir
WARM_UP_SECONDS = 1.0
START_TIMEOUT = 20.0
TOKENMINT = [sys.executable, "-m", "tokenmint.cli"]


@dataclass
class Result:
    connections: int
    seconds: float
    tokens: int
    errors: int
    tokens_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    server_cpu_us_per_token: float | None
    log_bytes_per_token: float


class Server:
    """`tokenmint serve --port 0` on 127.0.0.1, its output drained (and counted) by a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen([*TOKENMINT, "serve", "--host", "127.0.0.1", "--port", "0",
                                         "--data-dir", str(data_dir)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.output_bytes = 0
        self.issuer = ""
        found = threading.Event()

        def drain() -> None:
            for line in iter(self.process.stdout.readline, b""):
                self.output_bytes += len(line)
                match = re.search(rb"authorization server on (http://\S+)", line)
                if match:
                    self.issuer = match.group(1).decode()
                    found.set()
        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError("tokenmint serve did not start")

    def cli(self, *args: str) -> str:
        return subprocess.run([*TOKENMINT, *args, "--data-dir", str(self.data_dir)], check=True, timeout=60,
                              capture_output=True, text=True).stdout

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the server process so far (Linux /proc), or None."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def drive(issuer: str, authorization: str, connections: int, seconds: float,
          server: Server) -> Result:
    """``connections`` keep-alive connections posting token requests for ``seconds`` (after a warm-up)."""
    target = urlsplit(issuer)
    body = urlencode({"grant_type": "client_credentials", "resource": RESOURCE, "scope": "demo:read"}).encode()
    headers = {"Authorization": authorization, "Content-Type": "application/x-www-form-urlencoded",
               "Connection": "keep-alive"}
    measuring, stop = threading.Event(), threading.Event()
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections

    def client(i: int) -> None:
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                connection.request("POST", "/token", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                ok = response.status == 200 and b'"access_token"' in answer
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            if measuring.is_set():
                if ok:
                    latencies[i].append(time.perf_counter() - started)
                else:
                    errors[i] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(WARM_UP_SECONDS)
    cpu_before, logged_before = server.cpu_seconds(), server.output_bytes
    started = time.perf_counter()
    measuring.set()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - started
    cpu_after, logged_after = server.cpu_seconds(), server.output_bytes
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    samples = sorted(latency for per_client in latencies for latency in per_client)
    tokens = len(samples)

    def percentile(p: float) -> float:
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))] * 1000 if samples else float("nan")
    cpu = (cpu_after - cpu_before) / tokens * 1e6 if tokens and cpu_before is not None and cpu_after else None
    return Result(connections, round(elapsed, 2), tokens, sum(errors), tokens / elapsed,
                  statistics.median(samples) * 1000 if samples else float("nan"), percentile(90), percentile(99),
                  cpu, (logged_after - logged_before) / tokens if tokens else 0.0)


def median_run(runs: list[Result]) -> Result:
    """The run with the median throughput, with every run's errors."""
    ranked = sorted(runs, key=lambda r: r.tokens_per_second)
    middle = ranked[(len(ranked) - 1) // 2]
    return Result(**{**asdict(middle), "errors": sum(r.errors for r in runs)})


def machine() -> str:
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor() or "unknown CPU")
    except OSError:
        cpu = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.machine()}"


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_LOAD_SECONDS", "10")))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_LOAD_RUNS", "3")))
    parser.add_argument("--json", type=Path, help="also write the figures here (for cost.py)")
    args = parser.parse_args(argv)

    runs: dict[int, list[Result]] = {connections: [] for connections in args.connections}
    with tempfile.TemporaryDirectory(prefix="tokenmint-load-") as data_dir:
        server = Server(Path(data_dir))
        try:
            client = json.loads(server.cli("client", "create", "--scope", "demo:read", "--json"))
            # RFC 6749 §2.3.1: form-encoded id and secret; tokenmint's are unreserved characters already
            authorization = "Basic " + base64.b64encode(
                f"{client['client_id']}:{client['client_secret']}".encode()).decode()
            for _ in range(args.runs):
                for connections in args.connections:
                    runs[connections].append(drive(server.issuer, authorization, connections, args.seconds, server))
        finally:
            server.stop()
    results = [median_run(measured) for measured in runs.values()]

    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}; `tokenmint serve` (embedded: SQLite, local "
          f"RS256 key) and the load generator on the same machine\n")
    print(f"| connections (keep-alive) | tokens/s (median of {args.runs}×{args.seconds:g} s) | p50 ms | p90 ms "
          "| p99 ms | errors | server CPU µs/token | log bytes/token |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = f"{r.server_cpu_us_per_token:.0f}" if r.server_cpu_us_per_token is not None else "n/a"
        print(f"| {r.connections} | {r.tokens_per_second:.0f} | {r.p50_ms:.1f} | {r.p90_ms:.1f} | {r.p99_ms:.1f} "
              f"| {r.errors} | {cpu} | {r.log_bytes_per_token:.0f} |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return results


if __name__ == "__main__":
    main()
