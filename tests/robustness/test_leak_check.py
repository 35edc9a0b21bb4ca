"""The run-wide leak check (support/leaks.py) catches what it should and nothing else: a pytest
session of planted leaks, run as `make test` runs ours, must fail naming where and what leaked,
without printing the value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})


def pytest_configure(config):
    from support import leaks

    leaks.install(config)
"""

PLANTED = """
import json
import logging
import os
from pathlib import Path

from support import leaks
from tokenmint.oauth.credentials import generate_client_secret, generate_token

CREATED = Path(os.environ["CREATED"])


def keep(value):
    with CREATED.open("a") as fh:
        fh.write(value + "\\n")
    return value


def test_logs_a_new_secret():
    secret = keep(generate_client_secret())
    logging.getLogger("agent").warning("registered with %s", secret)


def test_prints_a_token_it_read_from_a_response():
    token = keep("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0bWNfeCJ9.c2lnbmF0dXJlMDAwMDAwMDAwMDAwMDA")
    leaks.CHECK.response(json.dumps({"access_token": token, "token_type": "Bearer"}))
    print("got", token)


def test_keeps_its_secret():
    assert keep(generate_client_secret()).startswith("tmsec_")


def test_a_command_may_show_what_it_creates_but_not_what_others_did():
    shown = keep("tmsec_" + "s" * 43)  # made by the (simulated) `client create` subprocess
    leaks.CHECK.cli(("client", "create", "--json"), json.dumps({"client_secret": shown}), "")
    registration_token = keep(generate_token("tmrat_"))
    leaks.CHECK.cli(("client", "list"), f"tmc_1 {registration_token}", "")
    leaks.CHECK.cli(("iat", "create"), f"initial access token: {shown}", "")  # not its own
"""


def run_session(tmp_path: Path, source: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_planted.py").write_text(textwrap.dedent(source))
    created = tmp_path / "created.txt"
    created.touch()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "CREATED": str(created)})
    return result, created.read_text().split()


def test_planted_leaks_fail_the_run_naming_the_output_and_the_kind_never_the_value(tmp_path):
    result, created = run_session(tmp_path, PLANTED)
    output = result.stdout + result.stderr

    assert result.returncode == 1, output  # every test passed; the leaks fail the run
    assert "4 passed" in output
    leaks = sorted(line for line in output.splitlines() if line.startswith("LEAK "))
    assert leaks == [
        "LEAK access token ×1 in test_planted.py::test_prints_a_token_it_read_from_a_response (Captured stdout call)",
        "LEAK client secret ×1 in `tokenmint iat create` run by "
        "test_planted.py::test_a_command_may_show_what_it_creates_but_not_what_others_did (stdout)",
        "LEAK client secret ×1 in test_planted.py::test_logs_a_new_secret (Captured log call)",
        "LEAK registration access token ×1 in `tokenmint client list` run by "
        "test_planted.py::test_a_command_may_show_what_it_creates_but_not_what_others_did (stdout)",
    ], output
    assert len(created) == 5 and not any(value in output for value in created)


def test_a_run_without_leaks_passes(tmp_path):
    result, created = run_session(tmp_path, PLANTED.split("def test_logs_a_new_secret")[0] + """
def test_keeps_its_secret():
    assert keep(generate_client_secret()).startswith("tmsec_")
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "LEAK" not in result.stdout and len(created) == 1


def test_the_check_reads_server_output_and_key_files(tmp_path):
    # (in this process, on a detector of its own: a server's banner may show what nothing else showed;
    # its log, nothing; its key files' PEM, nowhere)
    from support.leaks import LeakCheck
    from support.server import Server

    check = LeakCheck(current_test="test_x")
    demo_secret, token = "tmsec_" + "d" * 43, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0bWMifQ.c2ln"
    pem = "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\n" + "B" * 20 + "\n-----END PRIVATE KEY-----\n"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "key_first.pem").write_text(pem)
    server = Server("http://127.0.0.1:1", tmp_path, output=[
        "tokenmint RS256 authorization server on http://127.0.0.1:1\n",
        f"  curl -s -u 'tmc_demo:{demo_secret}' \\\n",
        json.dumps({"message": "token.issued", "jti": "x"}) + "\n",
    ])
    check.server_started(server)
    check.response(json.dumps({"access_token": token}))
    assert not check.check()

    check.server_started(Server("http://127.0.0.1:2", tmp_path / "other", output=[
        json.dumps({"message": "token.denied", "detail": f"bad {demo_secret} {token}"}) + "\n",
        "Traceback: key " + "A" * 64 + "\n"]))
    assert dict(check.check()) == {
        ("the `tokenmint serve` started by test_x (log)", "client secret"): 1,
        ("the `tokenmint serve` started by test_x (log)", "access token"): 1,
        ("the `tokenmint serve` started by test_x (banner)", "private key"): 1,
    }
