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

from . import leaks

TOKENMINT = [sys.executable, "-m", "tokenmint.cli"]
START_TIMEOUT = 20.0


@dataclass
class Server:
    issuer: str
    data_dir: Path
    # repr=False: it holds the banner's demo secret, which must not reach a failure message
    output: list[str] = field(default_factory=list, repr=False)
    verify: str | bool = True  # what requests verifies the server's certificate with (a CA bundle over https)

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run an admin command against this server's data dir, as a user would."""
        admin = ("--data-dir", str(self.data_dir)) if args[0] != "token" else ()
        result = subprocess.run([*TOKENMINT, *args, *admin], capture_output=True,
                                text=True, timeout=60, env={**os.environ, **(env or {})})
        leaks.CHECK.cli(args, result.stdout, result.stderr)  # what it printed is checked at the end
        if check and result.returncode != 0:  # (the command only: its arguments may hold a secret)
            raise AssertionError(f"tokenmint {' '.join(args[:2])} failed: {result.stderr}")
        return result

    @property
    def metadata(self) -> dict:
        return requests.get(self.issuer + "/.well-known/oauth-authorization-server", timeout=5,
                            verify=self.verify).json()


def start_server(data_dir: Path, *extra: str, env: dict | None = None,
                 ca_bundle: Path | None = None) -> tuple[subprocess.Popen, Server]:
    """Start ``tokenmint serve --port 0`` and wait (bounded) until it has printed its issuer and answers.
    With ``--tls-cert`` in ``extra``, pass the CA bundle that verifies the server as ``ca_bundle``.

    A thread drains its output into ``Server.output`` for the whole run: an undrained pipe would
    fill up with audit lines and block the server.
    """
    process = subprocess.Popen([*TOKENMINT, "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               env={**os.environ, **(env or {})})
    server = Server("", data_dir, verify=str(ca_bundle) if ca_bundle else True)
    leaks.CHECK.server_started(server)  # its output is checked at the end
    threading.Thread(target=lambda: server.output.extend(iter(process.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and not server.issuer:
        match = re.search(r"authorization server on (https?://\S+)", "".join(server.output))
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
            if requests.get(server.issuer + "/jwks.json", timeout=1, verify=server.verify).ok:
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



