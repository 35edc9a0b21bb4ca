"""A leak check over a whole test run: every secret and token the run creates must stay out of every
output the run produces, except where the product is meant to show it.

What is recorded (created):
- in this process: every value ``tokenmint.oauth.credentials.generate_token`` makes (client secrets,
  initial and registration access tokens), every access token ``issue_access_token`` signs, and every
  private key ``LocalKeyMaterial`` writes (its PEM);
- from the real servers the e2e suites start: the credentials in every HTTP response the tests read
  (requests, httpx): ``tmsec_``/``tmiat_``/``tmrat_`` values and ``access_token`` members; what the
  server's start-up banner and the displaying CLI commands show (below); its key files' PEM.

What is checked (output): every test's captured stdout, stderr and log records and its failure
report (all of pytest's report sections), each server's whole output (its audit log), and the
output of every CLI command the tests run against a server.

Where a value may appear (shown to its user once, by design), and only in the output that first
shows it: the ``tokenmint serve`` banner's plain-text lines (the demo client's secret, a generated
initial access token), and the standard output of ``client create``, ``client rotate-secret``,
``iat create`` and ``token`` (which prints the access token it fetched). HTTP response bodies are
where credentials are delivered, not output: they are read, not checked.

At the end of the session a leak fails the run with the output it was found in and the kind of
value, never the value. Known limits: a value that is transformed before it leaks (base64 inside
a Basic header, a truncated prefix) is not recognised; output outside pytest's capture (``-s``) and
of subprocesses a test starts itself and never prints is not seen.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PREFIXED = re.compile(r"\b(?:tmsec|tmiat|tmrat)_[A-Za-z0-9_-]{20,}")
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
PEM_LINE = re.compile(r"[A-Za-z0-9+/]{64}")  # a full line of a PEM body
KINDS = {"tmsec_": "client secret", "tmiat_": "initial access token", "tmrat_": "registration access token"}
# CLI commands that show what they create (or fetch) to the user who ran them, on standard output.
DISPLAYING_COMMANDS = (("client", "create"), ("client", "rotate-secret"), ("iat", "create"), ("token",))


def kind_of(value: str) -> str:
    return KINDS.get(value[:6]) or ("access token" if value.startswith("eyJ") else "private key")


@dataclass
class Output:
    where: str
    text: str
    shows: frozenset[str] = frozenset()  # the values this output is meant to show


@dataclass(eq=False)  # a plugin object: hashable by identity
class LeakCheck:
    created: dict[str, float] = field(default_factory=dict)  # value → when first seen (monotonic)
    pem_lines: set[str] = field(default_factory=set)
    outputs: list[Output] = field(default_factory=list)
    servers: list[tuple[Any, str]] = field(default_factory=list)  # (Server, the test that started it)
    current_test: str = "(outside a test)"
    leaks: Counter = field(default_factory=Counter)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    # -- recording -----------------------------------------------------------------------------
    def record(self, value: str) -> None:
        self.created.setdefault(value, time.monotonic())

    def record_pem(self, pem: str | bytes) -> None:
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        if "PRIVATE KEY" in text:
            self.pem_lines.update(PEM_LINE.findall(text))

    def response(self, body: bytes | str) -> None:
        """A response body a test read: the credentials it delivers."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        for value in PREFIXED.findall(text):
            self.record(value)
        try:
            document = json.loads(text)
        except ValueError:
            return
        if isinstance(document, dict) and isinstance(document.get("access_token"), str):
            self.record(document["access_token"])

    def output(self, where: str, text: str) -> None:
        if text and (where, text) not in self._seen:  # pytest repeats earlier phases' sections
            self._seen.add((where, text))
            self.outputs.append(Output(where, text))

    def display(self, where: str, text: str) -> None:
        """Output meant to show what it made: the values it is the first to show are its own."""
        now = time.monotonic()
        shown = {value for value in (*PREFIXED.findall(text), *JWT.findall(text))
                 if self.created.setdefault(value, now) == now}
        self.outputs.append(Output(where, text, frozenset(shown)))

    def cli(self, args: tuple[str, ...], stdout: str, stderr: str) -> None:
        where = f"`tokenmint {' '.join(args[:2])}` run by {self.current_test}"
        if any(args[:len(command)] == command for command in DISPLAYING_COMMANDS):
            self.display(where + " (stdout)", stdout)
        else:
            self.output(where + " (stdout)", stdout)
        self.output(where + " (stderr)", stderr)

    def server_started(self, server: Any) -> None:
        self.servers.append((server, self.current_test))

    # -- checking ------------------------------------------------------------------------------
    def _collect_servers(self) -> None:
        for server, by in self.servers:
            lines = list(server.output)
            # the banner's lines are its plain ones (its audit lines are JSON): run last, it owns only
            # what nothing else has shown (what the test read from a response is not its own)
            banner = "".join(line for line in lines if not line.lstrip().startswith("{"))
            where = f"the `tokenmint serve` started by {by}"
            self.display(where + " (banner)", banner)
            self.output(where + " (log)", "".join(line for line in lines if line.lstrip().startswith("{")))
            for pem in Path(server.data_dir, "keys").glob("*"):
                self.record_pem(pem.read_bytes())
        self.servers.clear()

    def check(self) -> Counter:
        self._collect_servers()
        for output in self.outputs:
            for value in {*PREFIXED.findall(output.text), *JWT.findall(output.text)}:
                if value in self.created and value not in output.shows:
                    self.leaks[(output.where, kind_of(value))] += 1
            if self.pem_lines and self.pem_lines.intersection(PEM_LINE.findall(output.text)):
                self.leaks[(output.where, "private key")] += 1
        self.outputs.clear()
        self._seen.clear()
        return self.leaks

    # -- pytest hooks --------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.current_test = nodeid

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.output(f"{report.nodeid} ({title})", content)
        if report.failed:
            self.output(f"{report.nodeid} (failure report, {report.when})", report.longreprtext)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.check():
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.leaks:
            return
        terminalreporter.section("leak check: secrets or tokens in the run's output", red=True)
        for (where, kind), count in sorted(self.leaks.items()):
            terminalreporter.line(f"LEAK {kind} ×{count} in {where}", red=True)


CHECK = LeakCheck()


def install(config: pytest.Config) -> None:
    """Record what tokenmint creates in this process and what the tests read over HTTP; check at the end."""
    _wrap_generators()
    _wrap_http_clients()
    config.pluginmanager.register(CHECK, "tokenmint-leak-check")


def _rebind(module_prefix: str, original: Any, replacement: Any) -> None:
    """``replacement`` wherever a loaded module holds ``original`` (``from x import f`` copies)."""
    import sys

    for name, module in list(sys.modules.items()):
        if name == module_prefix or name.startswith(module_prefix + "."):
            for attribute, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attribute, replacement)


def _wrap_generators() -> None:
    from tokenmint.adapters.embedded import local_keys
    from tokenmint.oauth import access_token, credentials

    generate_token = credentials.generate_token

    def recorded_generate_token(prefix: str) -> str:
        value = generate_token(prefix)
        CHECK.record(value)
        return value
    _rebind("tokenmint", generate_token, recorded_generate_token)

    issue_access_token = access_token.issue_access_token

    def recorded_issue_access_token(*args: Any, **kwargs: Any) -> Any:
        token = issue_access_token(*args, **kwargs)
        CHECK.record(token.value)
        return token
    _rebind("tokenmint", issue_access_token, recorded_issue_access_token)

    create = local_keys.LocalKeyMaterial.create

    def recorded_create(self: Any, key_id: str, alg: str, **kwargs: Any) -> Any:
        key_ref, jwk = create(self, key_id, alg, **kwargs)
        path = self._path(key_ref)
        if path.exists():
            CHECK.record_pem(path.read_bytes())
        return key_ref, jwk
    local_keys.LocalKeyMaterial.create = recorded_create


def _wrap_http_clients() -> None:
    import httpx
    import requests

    send = requests.Session.send

    def recorded_send(self: Any, request: Any, **kwargs: Any) -> Any:
        response = send(self, request, **kwargs)
        if not kwargs.get("stream"):
            CHECK.response(response.content)
        return response
    requests.Session.send = recorded_send

    def read(response: Any) -> None:
        try:
            CHECK.response(response.content)
        except httpx.ResponseNotRead:  # streamed: the test reads it itself
            pass

    client_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def recorded_client_send(self: Any, request: Any, **kwargs: Any) -> Any:
        response = client_send(self, request, **kwargs)
        read(response)
        return response

    async def recorded_async_send(self: Any, request: Any, **kwargs: Any) -> Any:
        response = await async_send(self, request, **kwargs)
        read(response)
        return response
    httpx.Client.send, httpx.AsyncClient.send = recorded_client_send, recorded_async_send
