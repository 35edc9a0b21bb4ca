"""The real ``tokenmint serve`` on 127.0.0.1 with a client of every kind the robustness suites need."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import requests

from support.server import Server, read_banner, start_server, stop

DEMO = "https://api.example.com/demo"  # seeded by `tokenmint serve` on an empty data dir


class Hidden(str):
    """A credential that prints as itself but never shows in a repr (pytest's failure reports)."""

    def __repr__(self) -> str:
        return "<credential>"


@dataclass
class World:
    server: Server
    client_id: str  # client_secret_basic, scopes of both seeded resources, may introspect
    client_secret: str = field(repr=False)  # never in a failure message
    initial_access_token: str = field(repr=False)  # many uses, no policy limits

    @property
    def issuer(self) -> str:
        return self.server.issuer

    def token(self, resource: str, scope: str) -> Hidden:
        response = requests.post(self.issuer + "/token", auth=(self.client_id, self.client_secret), timeout=10,
                                 data={"grant_type": "client_credentials", "resource": resource, "scope": scope})
        assert response.status_code == 200, response.text
        return Hidden(response.json()["access_token"])

    def register(self, **metadata) -> dict:
        response = requests.post(self.issuer + "/register", json=metadata, timeout=10,
                                 headers={"Authorization": f"Bearer {self.initial_access_token}"})
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def world(request, tmp_path_factory) -> World:
    """The server, with the environment the test module names in ``SERVER_ENV`` (if any)."""
    process, server = start_server(tmp_path_factory.mktemp("tokenmint"), env=getattr(request.module, "SERVER_ENV", None))
    try:
        read_banner(process, server, "/token")
        client = json.loads(server.cli("client", "create", "--scope", "demo:read demo:write tools:echo tools:time",
                                       "--introspect", "--name", "robustness", "--json").stdout)
        iat = json.loads(server.cli("iat", "create", "--max-uses", "100000", "--json").stdout)
        yield World(server, client["client_id"], client["client_secret"], iat["initial_access_token"])
    finally:
        stop(process)
