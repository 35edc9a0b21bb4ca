"""The ``tokenmint`` command: run the embedded server, administer clients and resources, fetch tokens."""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import io
import json
import os
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

from . import admin, observability
from .config import ConfigError, Settings, outbound_settings, throttle_settings
from .oauth.jwk import SIGNING_ALGORITHMS
from .oauth.models import SUPPORTED_AUTH_METHODS, Client, Resource
from .oauth.mtls import ISSUER_METADATA
from .oauth.text import printable
from .routes import SAMPLE_AUTHORIZER_ROUTES

DEMO_RESOURCE = "https://api.example.com/demo"
DEMO_SCOPES = ["demo:read", "demo:write"]


# -- backends -------------------------------------------------------------------------------------
def _stores(args: argparse.Namespace) -> Any:
    """The store behind admin commands: the embedded data dir, or the deployed stack's table."""
    if args.backend == "aws":
        from .adapters.aws.clients import aws_client
        from .adapters.aws.dynamodb import DynamoDbStore

        table = args.table or os.environ.get("TOKENMINT_TABLE")
        if not table:
            raise admin.AdminError("--backend aws needs --table NAME (the stack's TableName output) "
                                   "or TOKENMINT_TABLE")
        return DynamoDbStore(aws_client("dynamodb", args.region), table)
    from .adapters.embedded.sqlite import SqliteDatabase, SqliteStore

    args.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _audit_log(args.data_dir)
    return SqliteStore(SqliteDatabase(args.data_dir / "tokenmint.db"))


@functools.cache
def _audit_log(data_dir: Path) -> Any:
    """The embedded backend's audit table, installed once per process as the audit trail's sink:
    the server's decisions and the CLI's changes land in it alike (``tokenmint audit`` reads it)."""
    from .adapters.embedded.sqlite import SqliteAuditLog, SqliteDatabase

    log = SqliteAuditLog(SqliteDatabase(data_dir / "tokenmint.db"))
    observability.install_audit_sink(log.append)
    return log


def _now() -> int:
    return int(time.time())


class _TerminalSafe(io.TextIOBase):
    """A text stream that passes everything through :func:`printable`: every human-readable line the
    CLI prints (tables, messages, errors) can carry stored, client-controlled text (a client name, an
    audit reason from an unauthenticated request), and none of it may drive the operator's terminal."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text, multiline=True))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()


@contextlib.contextmanager
def _terminal_safe_output() -> Any:
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalSafe(stdout), _TerminalSafe(stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _client_view(client: Client) -> dict[str, Any]:
    """What an admin may see of a client: never a secret or its hash."""
    return {
        "client_id": client.client_id,
        "client_name": client.name,
        "token_endpoint_auth_method": client.auth_method,
        "scope": " ".join(client.scopes),
        "client_id_issued_at": client.created_at,
        "disabled": client.disabled,
        "introspect": client.introspect,
        "introspect_resources": list(client.introspect_resources) if client.introspect_resources is not None else None,
        "tokens_not_before": client.tokens_not_before,
        "resources": list(client.resources) if client.resources is not None else None,
        "secrets": [{"created_at": s.created_at, "expires_at": s.expires_at} for s in client.secrets],
        "last_used_at": client.last_used_at,
        **client.metadata,
    }


def _resource_view(resource: Resource) -> dict[str, Any]:
    return {"resource": resource.identifier, "name": resource.name, "scope": " ".join(resource.scopes),
            "token_lifetime": resource.token_lifetime, "created_at": resource.created_at}


def _table(rows: list[list[str]], header: list[str]) -> None:
    cells = [[printable(str(cell)) for cell in row] for row in (header, *rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*cells, strict=True)]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# -- commands -------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from . import runtime
    from .server import Limits, make_server

    fixed = os.environ.get("TOKENMINT_INITIAL_ACCESS_TOKEN")
    _check_chosen_initial_access_token(fixed, dev=args.dev)
    tls, mtls = _serve_tls(args)
    limits = Limits(**{name: value for name, value in vars(args).items()
                       if name in Limits.__dataclass_fields__ and value is not None})
    server = make_server(args.host, args.port, tls, limits)
    # RFC 8705 §5: a second listener that requires a client certificate, like an API Gateway custom
    # domain with mutual TLS; its URL is published as mtls_endpoint_aliases.
    mtls_server = make_server(args.host, args.mtls_port, mtls, limits) if mtls else None
    host = f"[{args.host}]" if ":" in args.host else args.host
    scheme = "https" if tls else "http"
    base_url = f"{scheme}://{host}:{server.server_address[1]}"
    # Where client certificates reach the endpoints: the mTLS listener, or this one with --client-ca alone.
    mtls_base_url = (f"https://{host}:{mtls_server.server_address[1]}" if mtls_server
                     else base_url if tls and args.client_ca else None)
    settings = Settings(backend="embedded", issuer=args.issuer or base_url,
                        data_dir=args.data_dir, signing_alg=args.alg, allow_private_jwks_uri=args.dev,
                        authorizer_routes={route: tuple(scopes.split())
                                           for route, scopes in SAMPLE_AUTHORIZER_ROUTES.items()},
                        **throttle_settings(os.environ),  # TOKENMINT_AUTH_FAILURE_WINDOW etc. (docs/configuration.md)
                        **outbound_settings(os.environ),  # TOKENMINT_FETCH_DEADLINE
                        mtls_base_url=mtls_base_url)
    issuer = settings.issuer or ""
    backend = runtime.open_backend(settings)
    backend.key_ring.ensure_alg()
    runtime.install(backend)
    _audit_log(args.data_dir)
    print(f"tokenmint {settings.signing_alg} authorization server on {issuer} (data: {args.data_dir})")
    print(f"  metadata: {issuer}/.well-known/oauth-authorization-server")
    if mtls_server:
        print(f"  mutual TLS (client certificate required): {settings.mtls_base_url}")
    elif settings.mtls_base_url:
        print(f"  client certificates: optional, verified against {args.client_ca}")
    initial_token = admin.install_serve_token(backend.registrations, fixed, now=_now())
    shown = "from TOKENMINT_INITIAL_ACCESS_TOKEN" if fixed else initial_token
    print(f"  registration: POST {issuer}/register with Authorization: Bearer {shown}")
    if not backend.clients.list_clients() and not backend.resources.list_resources():
        _seed_demo(backend, issuer)
    else:
        print("  create a client with: tokenmint client create --scope \"...\"")
    sys.stdout.flush()
    if mtls_server:
        import threading

        threading.Thread(target=mtls_server.serve_forever, name="mtls", daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if mtls_server:
            mtls_server.shutdown()
            mtls_server.server_close()
        server.server_close()
    return 0


def _check_chosen_initial_access_token(value: str | None, *, dev: bool) -> None:
    """TOKENMINT_INITIAL_ACCESS_TOKEN registers clients with any scope: it must be as strong as a
    generated token; with --dev a weak one is allowed, loudly."""
    from .oauth.credentials import chosen_token_weakness

    weakness = chosen_token_weakness(value) if value is not None else None
    if weakness is None:
        return
    advice = ('generate one with: python3 -c "import secrets; print(\'tmiat_\' + secrets.token_urlsafe(32))"'
              ", or unset it to have one generated")
    if not dev:
        raise admin.AdminError(f"TOKENMINT_INITIAL_ACCESS_TOKEN is too weak to guard registration ({weakness}); "
                               f"{advice} (--dev accepts it for local development)")
    print(f"WARNING: TOKENMINT_INITIAL_ACCESS_TOKEN is weak ({weakness}): anyone who guesses it can register "
          f"clients. Accepted because of --dev; never expose this server. ({advice})", file=sys.stderr)


def _serve_tls(args: argparse.Namespace) -> tuple[Any, Any]:
    """The TLS contexts of the main listener and of the mutual-TLS one (None: plain HTTP / none)."""
    from .server import tls_context

    if bool(args.tls_cert) != bool(args.tls_key):
        raise admin.AdminError("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        raise admin.AdminError("--client-ca needs --tls-cert and --tls-key (client certificates need TLS)")
    if args.mtls_port is not None and not args.client_ca:
        raise admin.AdminError("--mtls-port needs --client-ca (the truststore client certificates are verified with)")
    if not args.tls_cert:
        return None, None
    try:
        if args.mtls_port is not None:  # as on AWS: certificates reach the functions on the mTLS host only
            return (tls_context(args.tls_cert, args.tls_key),
                    tls_context(args.tls_cert, args.tls_key, args.client_ca, require_client_cert=True))
        return tls_context(args.tls_cert, args.tls_key, args.client_ca), None
    except OSError as exc:  # ssl.SSLError too: a missing file, a key that does not match, a bad bundle
        raise admin.AdminError(f"cannot use --tls-cert/--tls-key/--client-ca: {exc}") from None


def _seed_demo(backend: Any, issuer: str) -> None:
    now = _now()
    admin.create_resource(backend.resources, DEMO_RESOURCE, DEMO_SCOPES, now=now, name="demo API")
    # The sample protected API served beside the server (handlers/tools.py), one scope per tool.
    admin.create_resource(backend.resources, issuer + "/tools", ["tools:echo", "tools:time"], now=now,
                          name="sample agent tools")
    client, secret = admin.create_client(backend.clients, scopes=DEMO_SCOPES, now=now, name="demo client")
    print(f"\nSeeded the demo resource {DEMO_RESOURCE} ({' '.join(DEMO_SCOPES)}), the sample tools API "
          f"{issuer}/tools (tools:echo tools:time) and a demo client for the demo resource.")
    print("Its secret is shown only now. Get a token:\n")
    print(f"  curl -s -u '{client.client_id}:{secret}' \\\n"
          f"    -d grant_type=client_credentials --data-urlencode resource={DEMO_RESOURCE} \\\n"
          f"    {issuer}/token\n")


def cmd_resource_create(args: argparse.Namespace) -> int:
    resource = admin.create_resource(_stores(args), args.identifier, args.scope.split(), now=_now(),
                                     token_lifetime=args.token_lifetime, name=args.name)
    if args.json:
        _print_json(_resource_view(resource))
    else:
        print(f"resource {resource.identifier} defines: {' '.join(resource.scopes)} "
              f"(tokens live {resource.token_lifetime}s)")
    return 0


def cmd_resource_list(args: argparse.Namespace) -> int:
    resources = _stores(args).list_resources()
    if args.json:
        _print_json([_resource_view(r) for r in resources])
    else:
        _table([[r.identifier, " ".join(r.scopes), str(r.token_lifetime)] for r in resources],
               ["RESOURCE", "SCOPES", "LIFETIME"])
    return 0


# `client create` options for RFC 8705 §2.1.2's subject members (tls_client_auth: give exactly one).
TLS_SUBJECT_OPTIONS = {"--tls-subject-dn": "tls_client_auth_subject_dn", "--tls-san-dns": "tls_client_auth_san_dns",
                       "--tls-san-uri": "tls_client_auth_san_uri", "--tls-san-ip": "tls_client_auth_san_ip",
                       "--tls-san-email": "tls_client_auth_san_email"}


def cmd_client_create(args: argparse.Namespace) -> int:
    metadata = {member: getattr(args, member) for member in TLS_SUBJECT_OPTIONS.values() if getattr(args, member)}
    if args.tls_issuer_dn:
        metadata[ISSUER_METADATA] = args.tls_issuer_dn
    if args.certificate_bound:
        metadata["tls_client_certificate_bound_access_tokens"] = True
    if args.dpop_bound:
        metadata["dpop_bound_access_tokens"] = True
    jwks = _read_jwks(args.jwks_file) if args.jwks_file else None
    if args.certificate_file:
        jwks = {"keys": [*(jwks or {}).get("keys", []), admin.certificate_jwk(_read_text(args.certificate_file))]}
    client, secret = admin.create_client(_stores(args), scopes=args.scope.split(), now=_now(),
                                         auth_method=args.auth_method, name=args.name, introspect=args.introspect,
                                         resources=args.resource, introspect_resources=args.introspect_resource,
                                         jwks=jwks, metadata=metadata)
    view = _client_view(client)
    if secret is not None:
        view["client_secret"] = secret
        view["client_secret_expires_at"] = 0
    if args.json:
        _print_json(view)
    else:
        print(f"client_id:     {client.client_id}")
        if secret is not None:
            print(f"client_secret: {secret}\n(the secret is shown only now; it is stored as a hash)")
        print(f"auth method:   {client.auth_method}\nscopes:        {view['scope'] or '(none)'}")
    return 0


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, ValueError) as exc:
        raise admin.AdminError(f"{path}: {exc}") from None


def _read_jwks(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise admin.AdminError(f"--jwks-file {path}: {exc}") from None
    return document if "keys" in document else {"keys": [document]}  # a JWK Set, or one JWK


def cmd_client_list(args: argparse.Namespace) -> int:
    store = _stores(args)
    if args.unused_for:
        clients = admin.unused_clients(store, unused_for=admin.parse_duration(args.unused_for), now=_now())
    else:
        clients = store.list_clients()
    if args.json:
        _print_json([_client_view(c) for c in clients])
    else:
        _table([[c.client_id, c.name or "", c.auth_method, " ".join(c.scopes), "disabled" if c.disabled else "active",
                 _when(c.last_used_at)] for c in clients],
               ["CLIENT_ID", "NAME", "AUTH_METHOD", "SCOPES", "STATE", "LAST_USED"])
    return 0


def _when(epoch: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch)) if epoch else "never"


def cmd_client_rotate_secret(args: argparse.Namespace) -> int:
    grace = admin.parse_duration(args.grace)
    client, secret = admin.rotate_client_secret(_stores(args), args.client_id, grace=grace, now=_now())
    if args.json:
        _print_json({**_client_view(client), "client_secret": secret})
    else:
        print(f"client_secret: {secret}\n(shown only now; the previous secret works for {args.grace} more)")
    return 0


def cmd_client_delete(args: argparse.Namespace) -> int:
    admin.delete_client(_stores(args), args.client_id, now=_now())
    print(f"client {args.client_id} is deleted; tokens issued to it until now are invalid")
    return 0


def _iat_view(token: Any) -> dict[str, Any]:
    return {"token_id": token.token_id, "description": token.description, "created_at": token.created_at,
            "expires_at": token.expires_at, "max_uses": token.max_uses, "uses": token.uses,
            "policy": token.policy.to_record()}


def cmd_iat_create(args: argparse.Namespace) -> int:
    duration = admin.positive_duration
    token, value = admin.create_initial_access_token(
        _stores(args), now=_now(), scopes=args.scope.split() if args.scope else None, resources=args.resource,
        auth_methods=args.auth_method, max_uses=args.max_uses, description=args.description,
        introspect=args.introspect, introspect_resources=args.introspect_resource,
        max_secret_lifetime=duration(args.max_secret_lifetime) if args.max_secret_lifetime else None,
        expires_in=duration(args.expires_in) if args.expires_in else None)
    if args.json:
        _print_json({**_iat_view(token), "initial_access_token": value})
    else:
        print(f"initial access token: {value}\n(shown only now; register with "
              "POST /register and Authorization: Bearer <token>)")
    return 0


def cmd_iat_list(args: argparse.Namespace) -> int:
    tokens = _stores(args).list_initial_access_tokens()
    if args.json:
        _print_json([_iat_view(t) for t in tokens])
    else:
        _table([[t.token_id, f"{t.uses}/{t.max_uses or '∞'}", _when(t.expires_at) if t.expires_at else "never",
                 t.description or ""] for t in tokens], ["TOKEN_ID", "USES", "EXPIRES", "DESCRIPTION"])
    return 0


def _key_ring(args: argparse.Namespace) -> Any:
    """The key lifecycle of the embedded data dir or of the deployed stack (--backend aws)."""
    from . import runtime

    if args.backend == "aws":
        table = args.table or os.environ.get("TOKENMINT_TABLE")
        key_id = args.signing_key_id or os.environ.get("TOKENMINT_SIGNING_KEY_ID")
        if not table or not key_id or not args.stack:
            raise admin.AdminError("--backend aws needs --table, --signing-key-id (stack outputs TableName, "
                                   "SigningKeyArn) and --stack (the stack name that tags its keys)")
        replicas = tuple(r for r in (args.replica_regions or "").split(",") if r)
        settings = Settings(backend="aws", table_name=table, signing_key_id=key_id, region=args.region,
                            stack_name=args.stack, signing_alg=args.alg, key_replica_regions=replicas)
    else:
        settings = Settings(backend="embedded", data_dir=args.data_dir, signing_alg=args.alg)
    backend = runtime.open_backend(settings)
    if args.backend != "aws":
        _audit_log(args.data_dir)
    return backend.key_ring


def cmd_keys_list(args: argparse.Namespace) -> int:
    records = _key_ring(args).registry.list_keys()
    views = [{"kid": r.kid, "alg": r.alg, "state": r.state, "created_at": r.created_at,
              "activated_at": r.activated_at, "retiring_since": r.retiring_since, "compromised": r.compromised,
              "key_ref": r.key_ref} for r in records]
    if args.json:
        _print_json(views)
    else:
        _table([[v["kid"] or "(pending)", v["alg"], v["state"] + (" (compromised)" if v["compromised"] else ""),
                 _when(v["created_at"]), _when(v["activated_at"])] for v in views],
               ["KID", "ALG", "STATE", "CREATED", "ACTIVATED"])
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Start a rotation now (the scheduled function only rotates when one is due), or take the one
    under way as far as it may go, and say when its next key signs."""
    ring = _key_ring(args)
    actions = admin.rotate_keys(ring, force=True)
    print("\n".join(actions) if actions else "a rotation is already under way")
    upcoming = ring.next_activation()
    if upcoming is not None:
        record, at = upcoming
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
        runner = ("the next scheduled rotation after that" if args.backend == "aws"
                  else "the first `tokenmint keys rotate` after that")
        print(f"{record.kid} is published and signs from {when} ({runner} makes it active)")
    return 0


def cmd_keys_rollover(args: argparse.Namespace) -> int:
    new = admin.rollover_keys(_key_ring(args), compromised=args.compromised)
    if args.compromised:
        print(f"{new.kid} signs now; the previous key is out of the JWKS and disabled: its tokens are invalid")
    else:
        print(f"{new.kid} signs now; the previous key stays published until its tokens expire")
    return 0


def cmd_client_show(args: argparse.Namespace) -> int:
    _print_json(_client_view(admin.get_client(_stores(args), args.client_id)))
    return 0


def cmd_client_disable(args: argparse.Namespace) -> int:
    admin.set_client_disabled(_stores(args), args.client_id, True, now=_now())
    print(f"client {args.client_id} is disabled: it gets no new tokens, and its tokens are inactive")
    return 0


def cmd_client_revoke_tokens(args: argparse.Namespace) -> int:
    admin.revoke_client_tokens(_stores(args), args.client_id, now=_now())
    print(f"every token issued to {args.client_id} until now is inactive")
    return 0


def cmd_client_enable(args: argparse.Namespace) -> int:
    admin.set_client_disabled(_stores(args), args.client_id, False)
    print(f"client {args.client_id} is enabled")
    return 0


def _http_json(request: urllib.request.Request) -> tuple[int, Any]:
    """Send ``request`` through tokenmint.outbound (one 10 s deadline, no redirects: a redirect
    would carry the client's credentials elsewhere; http only to loopback) and read its JSON answer."""
    from .outbound import FetchError, FetchPolicy, exchange_json

    try:
        # Request types data as anything urllib can send; cmd_token only ever gives it bytes.
        status, body = exchange_json(request.full_url, FetchPolicy.configured(deadline=10.0),
                                     data=cast("bytes | None", request.data), headers=dict(request.header_items()))
    except FetchError as exc:  # the user's own request: what failed is theirs to read
        raise admin.AdminError(f"{request.full_url.split('?')[0]}: {exc.detail}") from None
    return status, body if body is not None else {"error": f"HTTP {status}"}


def cmd_token(args: argparse.Namespace) -> int:
    """Fetch a token the way any client would: discover the token endpoint, then §4.4.2."""
    secret = args.client_secret or os.environ.get("TOKENMINT_CLIENT_SECRET")
    if not secret:
        raise admin.AdminError("give the secret with --client-secret or TOKENMINT_CLIENT_SECRET")
    issuer = args.issuer.rstrip("/")
    status, metadata = _http_json(urllib.request.Request(issuer + "/.well-known/oauth-authorization-server"))
    if status != 200 or "token_endpoint" not in metadata:
        raise admin.AdminError(f"no authorization server metadata at {issuer} (HTTP {status})")
    form = {"grant_type": "client_credentials"}
    if args.resource:
        form["resource"] = args.resource
    if args.scope:
        form["scope"] = args.scope
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if args.auth_method == "client_secret_post":
        form.update(client_id=args.client_id, client_secret=secret)
    else:  # RFC 6749 §2.3.1: form-encode id and secret before base64
        pair = f"{quote(args.client_id, safe='')}:{quote(secret, safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    request = urllib.request.Request(metadata["token_endpoint"], data=urlencode(form).encode(), headers=headers)
    status, body = _http_json(request)
    if status != 200:
        print(json.dumps(body), file=sys.stderr)
        return 1
    if args.raw:
        print(body["access_token"])
    else:
        _print_json(body)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """The embedded backend's audit trail, newest last; on AWS it is in CloudWatch Logs."""
    if args.limit < 1:
        raise admin.AdminError("--limit must be at least 1")
    since = _since(args.since) if args.since else None
    if args.backend == "aws":
        raise admin.AdminError(_logs_insights_hint(args, since))
    if not (args.data_dir / "tokenmint.db").exists():
        raise admin.AdminError(f"no tokenmint data in {args.data_dir} (give the server's --data-dir)")
    events = _audit_log(args.data_dir).query(client_id=args.client, action_prefix=args.action, since=since,
                                             limit=args.limit)
    if args.json:
        _print_json(events)
        return 0
    shown = ("at", "action", "outcome", "client_id", "actor", "source_ip", "user_agent")
    _table([[time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"])), e["action"], e["outcome"],
             e.get("client_id") or "", e.get("actor") or e.get("source_ip") or "",
             " ".join(f"{k}={v}" for k, v in e.items() if k not in shown)] for e in events],
           ["TIME (UTC)", "ACTION", "OUTCOME", "CLIENT_ID", "BY", "DETAILS"])
    return 0


def _since(value: str) -> float:
    """``15m``, ``1h``, ``7d`` (that long ago) or an ISO 8601 time (UTC unless it names a zone)."""
    from datetime import UTC, datetime

    try:
        return time.time() - admin.parse_duration(value)
    except admin.AdminError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise admin.AdminError(f"--since {value!r}: give a duration like 15m, 1h or 7d, or an ISO 8601 time "
                               "like 2026-01-31T09:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _logs_insights_hint(args: argparse.Namespace, since: float | None) -> str:
    """Where a deployed stack's audit trail is, and a ready CloudWatch Logs Insights query for it."""
    import re
    import shlex

    filters = ["ispresent(action) and ispresent(outcome)"]
    if args.client:
        filters.append('client_id = "{}"'.format(args.client.replace("\\", "\\\\").replace('"', '\\"')))
    if args.action:
        pattern = re.escape(args.action).replace("/", r"\/")  # a literal prefix, inside /.../
        filters.append(f"action like /^{pattern}/")
    query = ("fields @timestamp, action, outcome, client_id, actor, source_ip, user_agent, resource, scope, jti, reason"
             f" | filter {' and '.join(filters)} | sort @timestamp desc | limit {args.limit}")
    stack = args.stack or "<stack>"
    now = int(time.time())
    start = int(since) if since is not None else now - 86_400
    region = f" --region {shlex.quote(args.region)}" if args.region else ""
    return (  # words, not SQL: S608 reads "select those log groups ... from a shell" as a query
        "the deployed stack's audit trail is its functions' CloudWatch Logs, not a table: one JSON line per\n"  # noqa: S608
        f"audit event in the log groups /aws/lambda/{stack}-*Function-* (kept LogRetentionInDays).\n"
        "In the CloudWatch console, Logs Insights, select those log groups and run:\n\n"
        f"  {query}\n\n"
        "or from a shell (then: aws logs get-query-results --query-id <queryId>):\n\n"
        f"  aws logs start-query{region} --start-time {start} --end-time {now} \\\n"
        f"    --log-group-names $(aws logs describe-log-groups{region} --log-group-name-prefix "
        f"/aws/lambda/{shlex.quote(stack)}- --query 'logGroups[].logGroupName' --output text) \\\n"
        f"    --query-string {shlex.quote(query)}")


# -- argument parsing -----------------------------------------------------------------------------
def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TOKENMINT_DATA_DIR", ".tokenmint")),
                        help="embedded backend data directory (default: .tokenmint)")
    parser.add_argument("--backend", choices=("embedded", "aws"), default="embedded",
                        help="embedded (SQLite in --data-dir) or aws (the deployed stack's table)")
    parser.add_argument("--table", help="with --backend aws: the DynamoDB table (stack output TableName)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenmint", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the authorization server on the embedded backend")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TOKENMINT_DATA_DIR", ".tokenmint")))
    serve.add_argument("--issuer", help="issuer URL (default http://HOST:PORT)")
    serve.add_argument("--alg", default=os.environ.get("TOKENMINT_SIGNING_ALG", "RS256"),
                       choices=tuple(SIGNING_ALGORITHMS), help="token signing algorithm")
    serve.add_argument("--dev", action="store_true",
                       help="development only: allow private_key_jwt clients' jwks_uri on http and private addresses, "
                            "and a weak TOKENMINT_INITIAL_ACCESS_TOKEN (with a warning)")
    serve.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="serve HTTPS with this certificate (chain) file; the issuer becomes https://HOST:PORT")
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    serve.add_argument("--client-ca", type=Path, metavar="TRUSTSTORE_PEM",
                       help="mutual TLS (RFC 8705): ask for a client certificate (optional) and verify it "
                            "against this PEM bundle, as an API Gateway custom domain's truststore: the CAs "
                            "that issue client certificates, and self-signed client certificates that are "
                            "CA:FALSE (each one is a trust anchor)")
    serve.add_argument("--mtls-port", type=int, metavar="PORT",
                       help="with --client-ca: serve mutual TLS on this second port instead, certificate "
                            "required (0: a free port); its URL is published as mtls_endpoint_aliases")
    # What slow or numerous connections may hold (server.Limits; docs/cli.md: `tokenmint serve`).
    for flag, kind, what in (("--max-connections", int, "connections served at once"),
                             ("--max-connections-per-source", int, "of those, from one address (IPv6: one /64)"),
                             ("--idle-timeout", float, "seconds a connection may wait for its next request"),
                             ("--request-timeout", float, "seconds a request's head and body may take, in all")):
        serve.add_argument(flag, type=kind, metavar="N" if kind is int else "SECONDS", help=what)
    serve.set_defaults(func=cmd_serve)

    resource = commands.add_parser("resource", help="protected resources (APIs, MCP servers)")
    resource_commands = resource.add_subparsers(dest="action", required=True)
    create = resource_commands.add_parser("create", help="register a resource and the scopes it defines")
    create.add_argument("identifier", help="absolute URI of the resource (the tokens' aud)")
    create.add_argument("--scope", required=True, help='space-separated scopes, e.g. "read write"')
    create.add_argument("--token-lifetime", type=int, help="access token lifetime in seconds (default 600)")
    create.add_argument("--name")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_resource_create)
    listing = resource_commands.add_parser("list", help="list resources")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_resource_list)
    for sub in (create, listing):
        _add_backend_options(sub)

    client = commands.add_parser("client", help="OAuth clients")
    client_commands = client.add_subparsers(dest="action", required=True)
    create = client_commands.add_parser("create", help="create a client; its secret is shown once")
    create.add_argument("--scope", default="", help='space-separated scopes granted, e.g. "read write"')
    create.add_argument("--auth-method", default="client_secret_basic", choices=SUPPORTED_AUTH_METHODS)
    create.add_argument("--name")
    create.add_argument("--introspect", action="store_true", help="allow calling the introspection endpoint")
    create.add_argument("--resource", action="append", metavar="URI",
                        help="limit the client to this resource (repeatable; default: every resource)")
    create.add_argument("--introspect-resource", action="append", metavar="URI",
                        help="allow introspecting tokens of this resource only (repeatable; implies --introspect)")
    create.add_argument("--jwks-file", type=Path, help="private_key_jwt: the client's public keys (a JWK Set or a JWK)")
    for option, member in TLS_SUBJECT_OPTIONS.items():
        create.add_argument(option, dest=member, metavar="VALUE",
                            help=f"tls_client_auth: the certificate's {member.removeprefix('tls_client_auth_')}")
    create.add_argument("--tls-issuer-dn", metavar="DN",
                        help="tls_client_auth, optional: only certificates the CA of this RFC 4514 name issued "
                             "(e.g. CN=dev CA; `openssl x509 -noout -issuer -nameopt rfc2253`)")
    create.add_argument("--certificate-file", type=Path, metavar="PEM",
                        help="self_signed_tls_client_auth: the client's certificate (registered as x5c); "
                             "it must be CA:FALSE")
    create.add_argument("--certificate-bound", action="store_true",
                        help="bind its tokens to its TLS client certificate (RFC 8705 cnf.x5t#S256)")
    create.add_argument("--dpop-bound", action="store_true", help="require a DPoP proof on every token request")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=cmd_client_create)
    listing = client_commands.add_parser("list", help="list clients")
    listing.add_argument("--unused-for", metavar="DURATION",
                         help="only clients without a token for this long, e.g. 30d")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_client_list)
    rotate = client_commands.add_parser("rotate-secret", help="issue a new secret; the old one works for --grace")
    rotate.add_argument("client_id")
    rotate.add_argument("--grace", default="1h", help="how long the previous secret keeps working (default 1h; 0: not)")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(func=cmd_client_rotate_secret)
    subs = [create, listing, rotate]
    for name, func, text in (("show", cmd_client_show, "show a client (never its secret)"),
                             ("disable", cmd_client_disable, "stop issuing tokens to a client"),
                             ("enable", cmd_client_enable, "issue tokens to a disabled client again"),
                             ("delete", cmd_client_delete, "remove a client; its outstanding tokens become invalid"),
                             ("revoke-tokens", cmd_client_revoke_tokens,
                              "make every token issued to a client until now inactive")):
        sub = client_commands.add_parser(name, help=text)
        sub.add_argument("client_id")
        sub.set_defaults(func=func)
        subs.append(sub)
    for sub in subs:
        _add_backend_options(sub)

    iat = commands.add_parser("iat", help="initial access tokens: who may register clients (RFC 7591)")
    iat_commands = iat.add_subparsers(dest="action", required=True)
    create = iat_commands.add_parser("create", help="mint an initial access token; shown once")
    create.add_argument("--scope", help='scopes registrations may request (default: any)')
    create.add_argument("--resource", action="append", metavar="URI", help="resources its clients are limited to")
    create.add_argument("--auth-method", action="append", choices=SUPPORTED_AUTH_METHODS,
                        help="allowed token_endpoint_auth_method (repeatable; default: any)")
    create.add_argument("--max-secret-lifetime", metavar="DURATION", help="client secrets expire after, e.g. 90d")
    create.add_argument("--expires-in", metavar="DURATION", help="the token itself expires after, e.g. 7d")
    create.add_argument("--max-uses", type=int, help="how many clients it may register")
    create.add_argument("--introspect", action="store_true", help="its clients may call the introspection endpoint")
    create.add_argument("--introspect-resource", action="append", metavar="URI",
                        help="… for tokens of this resource only (repeatable; implies --introspect)")
    create.add_argument("--description")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_iat_create)
    listing = iat_commands.add_parser("list", help="list initial access tokens (never their values)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_iat_list)
    for sub in (create, listing):
        _add_backend_options(sub)

    keys = commands.add_parser("keys", help="signing keys: list, rotate, roll over")
    key_commands = keys.add_subparsers(dest="action", required=True)
    listing = key_commands.add_parser("list", help="every key with its state (next, active, retiring, retired)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_keys_list)
    rotate = key_commands.add_parser("rotate", help="start a rotation now: publish the next key (and take one "
                                                    "under way as far as it may go)")
    rotate.add_argument("--force", action="store_true", help=argparse.SUPPRESS)  # what rotate always does now
    rotate.set_defaults(func=cmd_keys_rotate)
    rollover = key_commands.add_parser("rollover", help="make a new key sign at once")
    rollover.add_argument("--compromised", action="store_true",
                          help="also remove the old key from the JWKS now, invalidating its tokens")
    rollover.set_defaults(func=cmd_keys_rollover)
    for sub in (listing, rotate, rollover):
        _add_backend_options(sub)
        sub.add_argument("--alg", default=os.environ.get("TOKENMINT_SIGNING_ALG", "RS256"),
                         choices=tuple(SIGNING_ALGORITHMS), help="algorithm of keys it creates")
        sub.add_argument("--stack", default=os.environ.get("TOKENMINT_STACK"), help="with --backend aws")
        sub.add_argument("--signing-key-id", help="with --backend aws: the stack's SigningKeyArn output")
        sub.add_argument("--replica-regions", default=os.environ.get("TOKENMINT_KEY_REPLICA_REGIONS"),
                         help="with --backend aws, multi-region: the stack's KeyReplicaRegions (comma-separated)")

    token = commands.add_parser("token", help="fetch an access token from a running server")
    token.add_argument("--issuer", default="http://127.0.0.1:8000")
    token.add_argument("--client-id", required=True)
    token.add_argument("--client-secret", help="or TOKENMINT_CLIENT_SECRET (keeps it out of shell history)")
    token.add_argument("--auth-method", default="client_secret_basic",
                       choices=("client_secret_basic", "client_secret_post"))
    token.add_argument("--resource")
    token.add_argument("--scope")
    token.add_argument("--raw", action="store_true", help="print only the access token")
    token.set_defaults(func=cmd_token)

    audit = commands.add_parser("audit", help="the audit trail: issuances, denials, registrations, admin changes")
    audit.add_argument("--client", metavar="ID", help="only events naming this client")
    audit.add_argument("--action", metavar="PREFIX", help="only actions starting with this, e.g. token. or client.")
    audit.add_argument("--since", metavar="DURATION|ISO", help="only events since, e.g. 1h, 7d or 2026-01-31T09:00Z")
    audit.add_argument("--limit", type=int, default=50, help="at most this many, the newest (default 50)")
    audit.add_argument("--json", action="store_true", help="print a JSON array of the events")
    audit.add_argument("--stack", default=os.environ.get("TOKENMINT_STACK"),
                       help="with --backend aws: the stack name (its functions' log groups)")
    _add_backend_options(audit)
    audit.set_defaults(func=cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _observe(args)
    with _terminal_safe_output():
        try:
            return args.func(args)
        except (admin.AdminError, ConfigError) as exc:
            print(f"tokenmint: {exc}", file=sys.stderr)
            return 2


def _observe(args: argparse.Namespace) -> None:
    """Metrics are for Lambda: the CLI prints none, and ``serve`` only with
    POWERTOOLS_METRICS_DISABLED=false (EMF lines among its log, to check them locally). Admin
    commands log to stderr, keeping stdout for their output: only warnings on the embedded backend
    (its audit table records each change), every audit event with --backend aws (no other record)."""
    serving = args.func is cmd_serve
    observability.publish(serving and os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "false")
    if not serving:
        observability.log_to(sys.stderr, "INFO" if getattr(args, "backend", None) == "aws" else "WARNING")


if __name__ == "__main__":
    sys.exit(main())
