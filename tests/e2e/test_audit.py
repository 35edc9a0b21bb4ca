"""`tokenmint audit` on a real server's data dir: the server's decisions (over HTTP) and the CLI's
changes are in the trail, the filters narrow it, and nothing secret is ever in it."""

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import requests

DEMO = "https://api.example.com/demo"


@pytest.fixture(scope="module")
def trail(server):
    """A token for the demo client, a refused request, and two CLI changes; what each printed."""
    banner = "".join(server.output)
    demo_id, demo_secret = re.search(r"-u '([^:]+):([^']+)'", banner).groups()
    initial_access_token = re.search(r"Bearer (tmiat_\S+)", banner).group(1)
    issued = requests.post(server.issuer + "/token", auth=(demo_id, demo_secret), timeout=10,
                           headers={"User-Agent": "audit-e2e/1.0"},
                           data={"grant_type": "client_credentials", "resource": DEMO})
    assert issued.status_code == 200
    refused = requests.post(server.issuer + "/token", auth=(demo_id, "tmsec_wrong"), timeout=10,
                            data={"grant_type": "client_credentials", "resource": DEMO})
    assert refused.status_code == 401
    created = json.loads(server.cli("client", "create", "--scope", "demo:read", "--json").stdout)
    server.cli("client", "disable", created["client_id"])
    secrets = {"demo secret": demo_secret, "new client's secret": created["client_secret"],
               "access token": issued.json()["access_token"], "initial access token": initial_access_token,
               "wrong secret": "tmsec_wrong"}
    return {"demo": demo_id, "created": created["client_id"], "secrets": secrets}


def audit(server, *args: str) -> list[dict]:
    result = server.cli("audit", *args, "--json")
    assert '"level"' not in result.stderr  # the CLI logs warnings only (the table records the events)
    return json.loads(result.stdout)


def test_given_a_token_and_a_cli_change_then_both_are_in_the_trail_with_who_and_from_where(server, trail):
    text = server.cli("audit").stdout
    assert "token.issued" in text and trail["demo"] in text and "client.disabled" in text

    events = audit(server)
    (issued,) = [e for e in events if e["action"] == "token.issued"]
    assert (issued["client_id"], issued["resource"], issued["scope"]) == (trail["demo"], DEMO, "demo:read demo:write")
    assert (issued["source_ip"], issued["user_agent"]) == ("127.0.0.1", "audit-e2e/1.0") and issued["jti"]
    (denied,) = [e for e in events if e["action"] == "token.denied"]
    assert denied["outcome"] == "invalid_client" and denied["source_ip"] == "127.0.0.1"
    by_cli = [(e["action"], e.get("client_id")) for e in events if e.get("actor") == "cli"]
    assert ("client.created", trail["created"]) in by_cli and ("client.disabled", trail["created"]) in by_cli
    assert ("client.created", trail["demo"]) in by_cli  # the demo client, seeded by `tokenmint serve`
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_given_filters_then_only_matching_events(server, trail):
    assert {e["action"] for e in audit(server, "--client", trail["demo"], "--action", "token.")} == {
        "token.issued", "token.denied"}
    assert [(e["action"], e["client_id"]) for e in audit(server, "--client", trail["created"])] == [
        ("client.created", trail["created"]), ("client.disabled", trail["created"])]
    assert {e["action"] for e in audit(server, "--action", "client.", "--since", "10m")} == {
        "client.created", "client.disabled"}
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert audit(server, "--since", future) == []
    (newest,) = audit(server, "--limit", "1")
    assert newest["action"] == "client.disabled"


def test_given_a_bad_filter_then_a_clear_error_and_exit_2(server, trail):
    result = server.cli("audit", "--since", "last tuesday", check=False)
    assert result.returncode == 2 and "--since" in result.stderr and result.stdout == ""


def test_nothing_secret_in_the_trail_or_the_servers_output_and_no_metrics_on_stdout(server, trail):
    printed = server.cli("audit").stdout + server.cli("audit", "--json").stdout
    for name, secret in trail["secrets"].items():
        assert secret not in printed, name
    log = "".join(server.output)
    # the server prints its log (audit lines among them), never an EMF metrics document
    assert '"action":"token.issued"' in log and '"_aws"' not in log
    for name, secret in trail["secrets"].items():  # the start banner shows two of them, once
        assert log.count(secret) == (1 if name in ("demo secret", "initial access token") else 0), name


def test_given_terminal_escapes_in_stored_text_then_the_cli_prints_them_escaped(server, trail):
    # Security review finding 10: an unauthenticated DPoP proof put escape sequences (its htm) into
    # the audit trail's reason, and the CLI printed stored text raw: on a terminal they erased rows.
    from support.dpop import DpopKey

    erase = "\x1b[2J\x1b[H\r\u202e"
    proof = DpopKey().proof("POST", server.issuer + "/token", htm="POST" + erase)
    refused = requests.post(server.issuer + "/token", timeout=10, headers={"DPoP": proof},
                            auth=(trail["demo"], trail["secrets"]["demo secret"]),
                            data={"grant_type": "client_credentials", "resource": DEMO})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    (denied,) = [e for e in audit(server, "--action", "token.denied") if e["outcome"] == "invalid_dpop_proof"]
    assert erase not in denied["reason"] and "\x1b" not in denied["reason"]  # the client's text is not echoed
    # Stored text holding escapes (an older trail, an operator's paste) is shown as escapes
    server.cli("client", "create", "--scope", "demo:read", "--name", f"a{erase}b")
    server.cli("iat", "create", "--scope", "demo:read", "--description", f"d{erase}")
    for command in (("audit",), ("client", "list"), ("iat", "list")):
        shown = server.cli(*command)
        for output in (shown.stdout, shown.stderr):
            assert not any(c in output for c in "\x1b\r\u202e"), command
    assert r"a\x1b[2J\x1b[H\r\u202eb" in server.cli("client", "list").stdout
    assert r"d\x1b[2J" in server.cli("audit", "--action", "iat.").stdout
    # and --json keeps the exact value for programs (JSON escapes it)
    assert f"a{erase}b" in [c["client_name"] for c in json.loads(server.cli("client", "list", "--json").stdout)]
