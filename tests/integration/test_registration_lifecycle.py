"""A client's whole life on each backend (SQLite, DynamoDB under moto):
register → token → read → update (token rotates) → rotate secret with overlap → disable → delete.
"""

import base64
import json

import jwt
import pytest

from support.fakes import InMemoryKeyStore
from tokenmint import admin
from tokenmint.oauth.client_credentials import ClientCredentialsGrant
from tokenmint.oauth.errors import InvalidClientError, InvalidTokenError
from tokenmint.oauth.form import parse_form
from tokenmint.oauth.models import Resource
from tokenmint.oauth.registration import ClientRegistrationEndpoint

ISSUER = "https://as.example.com"
API = "https://api.example.com/mcp"
START = 1_800_000_000


class World:
    def __init__(self, store) -> None:
        self.store, self.now, self.keys = store, START, InMemoryKeyStore()
        store.create_resource(Resource(API, ("tools:read", "tools:write")))
        self.registration = ClientRegistrationEndpoint(store, store, lambda: self.now)

    def token(self, client_id: str, secret: str) -> dict:
        grant = ClientCredentialsGrant(self.store, self.store, self.keys, lambda: self.now)
        basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        form = parse_form(b"grant_type=client_credentials", "application/x-www-form-urlencoded")
        token = grant.create_token_response(form, basic, ISSUER).body()["access_token"]
        return jwt.decode(token, self.keys.public_key, algorithms=["RS256"], audience=API,
                          options={"verify_exp": False, "verify_iat": False})


def test_a_clients_whole_life(store):
    world = World(store)
    _, iat = admin.create_initial_access_token(store, now=START, scopes=["tools:read", "tools:write"], max_uses=5,
                                               max_secret_lifetime=86_400)

    # register, then get a token with the issued credentials
    created = world.registration.register(json.dumps({"client_name": "agent", "scope": "tools:read"}).encode(),
                                          "application/json", "Bearer " + iat, ISSUER).body
    client_id, secret = created["client_id"], created["client_secret"]
    assert world.token(client_id, secret)["scope"] == "tools:read"
    assert store.get_client(client_id).last_used_at == START
    assert store.get_initial_access_token(store.list_initial_access_tokens()[0].hash).uses == 1

    # read, and update: the registration access token rotates
    rat = "Bearer " + created["registration_access_token"]
    assert world.registration.read(client_id, rat, ISSUER).body["client_name"] == "agent"
    document = {"client_id": client_id, "client_name": "agent v2", "scope": "tools:read tools:write"}
    updated = world.registration.update(client_id, json.dumps(document).encode(), "application/json", rat,
                                        ISSUER).body
    with pytest.raises(InvalidTokenError):
        world.registration.read(client_id, rat, ISSUER)
    rat = "Bearer " + updated["registration_access_token"]
    assert world.token(client_id, secret)["scope"] == "tools:read tools:write"

    # rotate the secret with an hour of overlap: both work, then only the new one
    world.now += 10
    _, new_secret = admin.rotate_client_secret(store, client_id, grace=3600, now=world.now)
    assert world.token(client_id, secret) and world.token(client_id, new_secret)
    world.now += 3600
    with pytest.raises(InvalidClientError):
        world.token(client_id, secret)
    assert world.token(client_id, new_secret)
    assert len(store.get_client(client_id).secrets) == 2  # the expired one is dropped at the next rotation

    # stale credentials show up; disabling stops tokens at once
    assert [c.client_id for c in admin.unused_clients(store, unused_for=60, now=world.now + 61)] == [client_id]
    admin.set_client_disabled(store, client_id, True)
    with pytest.raises(InvalidClientError, match="disabled"):
        world.token(client_id, new_secret)

    # delete: gone, and every token it got until now is marked invalid
    assert world.registration.delete(client_id, rat).status == 204
    assert store.get_client(client_id) is None
    assert store.deleted_client_not_before(client_id) == world.now + 1
    with pytest.raises(InvalidClientError):
        world.token(client_id, new_secret)


def test_an_admin_created_client_cannot_be_managed_through_rfc7592(store):
    world = World(store)
    client, _ = admin.create_client(store, scopes=["tools:read"], now=START)
    with pytest.raises(InvalidTokenError):
        world.registration.read(client.client_id, "Bearer tmrat_anything", ISSUER)


def test_rotating_twice_keeps_at_most_two_secrets_and_grace_zero_revokes_at_once(store):
    world = World(store)
    client, first = admin.create_client(store, scopes=["tools:read"], now=START)
    _, second = admin.rotate_client_secret(store, client.client_id, grace=600, now=START)
    _, third = admin.rotate_client_secret(store, client.client_id, grace=0, now=START + 1)
    world.now = START + 2
    assert len(store.get_client(client.client_id).secrets) == 1
    for stale in (first, second):
        with pytest.raises(InvalidClientError):
            world.token(client.client_id, stale)
    assert world.token(client.client_id, third)
