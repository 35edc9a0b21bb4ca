"""Start and drive the real ``tokenmint serve`` process on 127.0.0.1 (bounded waits; it always stops)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

TOKENMINT = [sys.executable, "-m", "tokenmint.cli"]
START_TIMEOUT = 20.0


@dataclass
class Server:
    issuer: str
    data_dir: Path
    output: list[str] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run an admin command against this server's data dir, as a user would."""
        admin = ("--data-dir", str(self.data_dir)) if args[0] != "token" else ()
        result = subprocess.run([*TOKENMINT, *args, *admin], capture_output=True,
                                text=True, timeout=60, env={**os.environ, **(env or {})})
        if check and result.returncode != 0:
            raise AssertionError(f"tokenmint {' '.join(args)} failed: {result.stderr}")
        return result

    @property
    def metadata(self) -> dict:
        return requests.get(self.issuer + "/.well-known/oauth-authorization-server", timeout=5).json()


def start_server(data_dir: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, Server]:
    """Start ``tokenmint serve --port 0`` and wait (bounded) until it has printed its issuer and answers.

    A thread drains its output into ``Server.output`` for the whole run: an undrained pipe would
    fill up with audit lines and block the server.
    """
    process = subprocess.Popen([*TOKENMINT, "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               env={**os.environ, **(env or {})})
    server = Server("", data_dir)
    threading.Thread(target=lambda: server.output.extend(iter(process.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and not server.issuer:
        match = re.search(r"authorization server on (http://\S+)", "".join(server.output))
        if match:
            server.issuer = match.group(1)
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.02)
    if not server.issuer:
        process.kill()
        raise AssertionError("tokenmint serve did not start:\n" + "".join(server.output))
    while time.monotonic() < deadline:
        try:
            if requests.get(server.issuer + "/jwks.json", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.05)
    return process, server


def read_banner(process: subprocess.Popen, server: Server, until: str, timeout: float = 5.0) -> str:
    """The server's output once a line contains ``until`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(until in line for line in list(server.output)):
        time.sleep(0.02)
    return "".join(server.output)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)



