"""`make bench`: the DESIGN.md performance budget, measured. Prints a Markdown table for docs/performance.md.

1. Cold start: import + init of each function in a fresh interpreter (the AWS backend with its two
   botocore clients), as a ratio to the baseline `import boto3` + two clients. Median of N runs.
2. Warm CPU per token: the token function's whole path (event → resolver → grant → response)
   with the real AWS adapters, but botocore clients replaced by stubs that answer at once, so only
   our own code (and powertools) is measured, not AWS I/O. process_time, median of batches.
3. AWS calls per token under moto, counted at botocore: cold (first) and warm, per auth method.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "21"))
WARM_BATCHES = int(os.environ.get("BENCH_WARM_BATCHES", "7"))
WARM_TOKENS = int(os.environ.get("BENCH_WARM_TOKENS", "500"))
ENV = {
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1", "TOKENMINT_BACKEND": "aws", "TOKENMINT_TABLE": "tokenmint-bench",
    "TOKENMINT_SIGNING_KEY_ID": "arn:aws:kms:us-east-1:111122223333:key/bench", "TOKENMINT_SIGNING_ALG": "RS256",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
BASELINE = "import boto3; boto3.client('kms'); boto3.client('dynamodb')"
FUNCTION_INIT = "import tokenmint.handlers.{name}; from tokenmint import runtime; runtime.backend()"
TIMED = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"


def cold_seconds(codes: list[str]) -> list[float]:
    """Median seconds of each snippet in a fresh interpreter. The snippets take turns, so that the
    machine's drift (this one is small and shared) weighs on all of them alike."""
    env = {**os.environ, **ENV, "PYTHONDONTWRITEBYTECODE": "0"}
    samples: list[list[float]] = [[] for _ in codes]
    for _ in range(COLD_RUNS):
        for i, code in enumerate(codes):
            out = subprocess.run([sys.executable, "-c", TIMED.format(code=code)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            samples[i].append(float(out))
    return [statistics.median(s) for s in samples]


class StubDynamoDb:
    """Answers GetItem/Query instantly with items shaped like the table's."""

    def __init__(self, items: dict[str, dict], resources: list[dict]) -> None:
        self.items, self.resources, self.calls = items, resources, Counter()

    def get_item(self, TableName, Key, **_):
        self.calls["GetItem"] += 1
        item = self.items.get(Key["pk"]["S"])
        return {"Item": item} if item else {}

    def query(self, TableName, ExpressionAttributeValues, **_):
        self.calls["Query"] += 1
        partition = ExpressionAttributeValues[":pk"]["S"]
        return {"Items": self.resources if partition == "RESOURCE" else []}  # no key records: bootstrap key

    def update_item(self, TableName, **_):
        self.calls["UpdateItem"] += 1
        return {}


class StubKms:
    def __init__(self, public_der: bytes) -> None:
        self.public_der, self.calls = public_der, Counter()

    def get_public_key(self, KeyId):
        self.calls["GetPublicKey"] += 1
        return {"PublicKey": self.public_der, "SigningAlgorithms": ["RSASSA_PKCS1_V1_5_SHA_256"]}

    def sign(self, KeyId, Message, MessageType, SigningAlgorithm):
        self.calls["Sign"] += 1
        return {"Signature": b"\x00" * 256}


def seed_records():
    from tokenmint.adapters.aws.dynamodb import CLIENT_SK, RESOURCE_PK, to_item
    from tokenmint.oauth.credentials import hash_secret
    from tokenmint.oauth.models import Client, ClientSecret, Resource

    resource = Resource("https://api.example.com/mcp", ("tools:read", "tools:write"), token_lifetime=300)
    clients = [Client("tmc_example", "client_secret_basic", ("tools:read", "tools:write"), 1_700_000_000,
                      (ClientSecret(hash_secret("tmsec_example0000000000000000000000000000000000"), 1_700_000_000),)),
               Client("tmc_example_post", "client_secret_post", ("tools:read", "tools:write"), 1_700_000_000,
                      (ClientSecret(hash_secret("tmsec_examplepost00000000000000000000000000000000"),
                                    1_700_000_000),))]
    return resource, clients, to_item, CLIENT_SK, RESOURCE_PK


def warm_cpu_microseconds() -> tuple[float, float]:
    """Median CPU µs per token through lambda_handler, AWS stubbed; and the same for the grant alone."""
    os.environ.update(ENV)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tokenmint import runtime
    from tokenmint.adapters.aws.dynamodb import DynamoDbStore
    from tokenmint.adapters.aws.kms import KmsKeyMaterial, KmsSigningKey
    from tokenmint.keys import ManagedKeyStore
    from tokenmint.adapters.cache import CachedResourceStore
    from tokenmint.config import Settings
    from tokenmint.handlers import token
    from tokenmint.oauth.client_credentials import ClientCredentialsGrant
    from tokenmint.oauth.form import parse_form
    from tokenmint.server import lambda_context

    resource, clients, to_item, client_sk, resource_pk = seed_records()
    items = {f"CLIENT#{c.client_id}": to_item(c.to_record(), pk=f"CLIENT#{c.client_id}", sk=client_sk)
             for c in clients}
    der = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    store = DynamoDbStore(StubDynamoDb(items, [to_item(resource.to_record(), pk=resource_pk, sk=resource.key)]),
                          "tokenmint-bench")
    kms = StubKms(der)
    keys = ManagedKeyStore(store, KmsKeyMaterial(kms, stack="bench", alias_prefix="alias/bench-key-"),
                           bootstrap=KmsSigningKey(kms, ENV["TOKENMINT_SIGNING_KEY_ID"], "RS256"))
    backend = runtime.Backend(Settings.from_env(), store, CachedResourceStore(store, time.monotonic), keys, store, store)
    runtime.install(backend)
    event = json.loads((EVENTS / "token_basic.json").read_text())
    context = lambda_context("TokenFunction")
    assert token.lambda_handler(event, context)["statusCode"] == 200

    def per_token(call) -> float:
        batches = []
        for _ in range(WARM_BATCHES):
            start = time.process_time()
            for _ in range(WARM_TOKENS):
                call()
            batches.append((time.process_time() - start) / WARM_TOKENS * 1e6)
        return statistics.median(batches)

    handler_us = per_token(lambda: token.lambda_handler(event, context))
    grant = ClientCredentialsGrant(store, backend.resources, keys, time.time)
    form_body = b"grant_type=client_credentials&resource=https%3A%2F%2Fapi.example.com%2Fmcp&scope=tools%3Aread"
    authorization = event["headers"]["authorization"]
    grant_us = per_token(lambda: grant.create_token_response(
        parse_form(form_body, "application/x-www-form-urlencoded"), authorization, "https://as.example"))
    runtime.install(None)
    return handler_us, grant_us


def aws_calls_per_token() -> dict[str, tuple[Counter, Counter]]:
    """botocore calls for the first token of a fresh process and per token after, under moto."""
    import boto3
    from moto import mock_aws

    sys.path.insert(0, str(ROOT / "tests"))
    from support.template import kms_key_spec, table_create_kwargs

    from tokenmint import runtime
    from tokenmint.adapters.aws import clients as aws_clients
    from tokenmint.adapters.aws.dynamodb import DynamoDbStore
    from tokenmint.handlers import token
    from tokenmint.server import lambda_context

    results = {}
    for method in TOKEN_EVENTS:
        with mock_aws():
            aws_clients.reset()
            runtime.install(None)
            boto3.client("dynamodb").create_table(**table_create_kwargs(ENV["TOKENMINT_TABLE"]))
            arn = boto3.client("kms").create_key(KeySpec=kms_key_spec("RS256"), KeyUsage="SIGN_VERIFY")["KeyMetadata"]
            os.environ["TOKENMINT_SIGNING_KEY_ID"] = arn["Arn"]
            resource, clients, *_ = seed_records()
            store = DynamoDbStore(boto3.client("dynamodb"), ENV["TOKENMINT_TABLE"])
            store.create_resource(resource)
            for client in clients:
                store.create_client(client)
            event = TOKEN_EVENTS[method](store)
            calls: Counter = Counter()
            for service in ("kms", "dynamodb"):
                aws_clients.aws_client(service, "us-east-1").meta.events.register(
                    "before-call", lambda model, **_: calls.update([f"{model.service_model.service_name}:{model.name}"]))
            assert token.lambda_handler(event(), lambda_context("TokenFunction"))["statusCode"] == 200
            cold = Counter(calls)
            calls.clear()
            n = 20
            for _ in range(n):
                assert token.lambda_handler(event(), lambda_context("TokenFunction"))["statusCode"] == 200
            warm = Counter({name: count / n for name, count in calls.items()})
            results[method] = (cold, warm)
            runtime.install(None)
    return results


def stored_event(name: str) -> Callable[[Any], Callable[[], dict]]:
    return lambda store: lambda: json.loads((EVENTS / name).read_text())


def form_event(form: dict[str, str], headers: dict[str, str] | None = None,
               certificate_pem: str | None = None) -> dict:
    """The token_post.json event with ``form`` as its body (and headers, a TLS client certificate)."""
    from urllib.parse import urlencode

    event = json.loads((EVENTS / "token_post.json").read_text())
    event["body"], event["isBase64Encoded"] = urlencode(
        {"grant_type": "client_credentials", "resource": "https://api.example.com/mcp", **form}), False
    event["headers"].update(headers or {})
    if certificate_pem:
        event["requestContext"]["authentication"] = {"clientCert": {"clientCertPem": certificate_pem}}
    return event


def token_url() -> str:
    context = json.loads((EVENTS / "token_post.json").read_text())["requestContext"]
    return f"https://{context['domainName']}/token"


def private_key_jwt(store) -> Callable[[], dict]:
    """A private_key_jwt client; each event carries a fresh assertion (they are single-use)."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from tokenmint.oauth.jwk import public_jwk
    from tokenmint.oauth.models import Client

    key = ec.generate_private_key(ec.SECP256R1())
    store.create_client(Client("tmc_pkjwt", "private_key_jwt", ("tools:read",), 1_700_000_000,
                               metadata={"jwks": {"keys": [public_jwk(key.public_key(), "ES256")]}}))
    issuer = token_url().removesuffix("/token")

    def make() -> dict:
        now = int(time.time())
        assertion = jwt.encode({"iss": "tmc_pkjwt", "sub": "tmc_pkjwt", "aud": issuer, "iat": now, "exp": now + 300,
                                "jti": str(uuid.uuid4())}, key, algorithm="ES256")
        return form_event({"client_assertion": assertion,
                           "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    return make


def client_certificate(*, issued: bool = False) -> tuple[Any, str]:
    """A client certificate (API Gateway would have checked its chain) and its PEM: self-signed, or
    ``issued`` by a throwaway CA, as tls_client_auth requires (a self-signed one authenticates only
    the self_signed_tls_client_auth client that registered it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-agent")])
    issuer_name, signer = name, key
    if issued:
        issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
        signer = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .sign(signer, hashes.SHA256()))
    return certificate, certificate.public_bytes(serialization.Encoding.PEM).decode()


def tls_client_auth(store) -> Callable[[], dict]:
    from tokenmint.oauth.models import Client

    _, pem = client_certificate(issued=True)
    store.create_client(Client("tmc_mtls", "tls_client_auth", ("tools:read",), 1_700_000_000,
                               metadata={"tls_client_auth_subject_dn": "CN=bench-agent"}))
    return lambda: form_event({"client_id": "tmc_mtls"}, certificate_pem=pem)


def self_signed_tls_client_auth(store) -> Callable[[], dict]:
    import base64

    from cryptography.hazmat.primitives import serialization

    from tokenmint.oauth.jwk import public_jwk
    from tokenmint.oauth.models import Client

    certificate, pem = client_certificate()
    jwk = {**public_jwk(certificate.public_key(), "ES256"),
           "x5c": [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]}
    store.create_client(Client("tmc_selfsigned", "self_signed_tls_client_auth", ("tools:read",), 1_700_000_000,
                               metadata={"jwks": {"keys": [jwk]}}))
    return lambda: form_event({"client_id": "tmc_selfsigned"}, certificate_pem=pem)


def client_secret_basic_dpop(store) -> Callable[[], dict]:
    """The client_secret_basic event with a fresh DPoP proof (RFC 9449: a proof's jti is single-use)."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    from tokenmint.oauth.jwk import public_jwk

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {name: value for name, value in public_jwk(key.public_key(), "ES256").items() if name in ("kty", "crv", "x", "y")}

    def make() -> dict:
        event = json.loads((EVENTS / "token_basic.json").read_text())
        event["headers"]["dpop"] = jwt.encode(
            {"htm": "POST", "htu": token_url(), "iat": int(time.time()), "jti": str(uuid.uuid4())}, key,
            algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})
        return event
    return make


# Each auth method (and DPoP on top of one): a maker of its token events, given the seeded store.
TOKEN_EVENTS: dict[str, Callable[[Any], Callable[[], dict]]] = {
    "client_secret_basic": stored_event("token_basic.json"),
    "client_secret_post": stored_event("token_post.json"),
    "private_key_jwt": private_key_jwt,
    "tls_client_auth": tls_client_auth,
    "self_signed_tls_client_auth": self_signed_tls_client_auth,
    "client_secret_basic + DPoP proof": client_secret_basic_dpop,
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.machine()}"


def main() -> None:
    functions = ("token", "discovery", "registration", "revocation", "introspection", "tools", "authorizer",
                 "key_rotation")
    baseline, *measured = cold_seconds([BASELINE, *(FUNCTION_INIT.format(name=name) for name in functions)])
    rows = [("baseline: `import boto3` + 2 clients", baseline, 1.0)]
    rows += [(f"{name} function import + init", seconds, seconds / baseline)
             for name, seconds in zip(functions, measured)]
    # The handlers print their EMF metrics to stdout, as in Lambda: measured, but kept out of the report.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        handler_us, grant_us = warm_cpu_microseconds()
        calls = aws_calls_per_token()

    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}\n")
    print(f"| cold start (median of {COLD_RUNS}) | ms | × baseline |\n|---|---:|---:|")
    for label, seconds, ratio in rows:
        print(f"| {label} | {seconds * 1000:.0f} | {ratio:.2f} |")
    print(f"\n| warm CPU per token (median of {WARM_BATCHES}×{WARM_TOKENS}, AWS I/O stubbed) | µs |\n|---|---:|")
    print(f"| token `lambda_handler` (resolver, logging, audit, grant, adapters) | {handler_us:.0f} |")
    print(f"| grant alone (form, client auth, resource, scopes, JWT) | {grant_us:.0f} |")
    print("\n| AWS calls per token | first token of a process | each warm token |\n|---|---|---|")
    for method, (cold, warm) in calls.items():
        fmt = lambda counter: ", ".join(f"{name} ×{count:g}" for name, count in sorted(counter.items()))  # noqa: E731
        print(f"| {method} | {fmt(cold)} | {fmt(warm)} |")


if __name__ == "__main__":
    main()
