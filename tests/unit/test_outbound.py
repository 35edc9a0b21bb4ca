"""Outbound fetches (tokenmint.outbound): one total deadline, DNS included; the checked address and
no other; no redirects; one generic error with the detail kept for the audit log; only a bounded
JSON object comes back. Hostile hosts are served from 127.0.0.1 (support/hostile_http.py); an
injected resolver gives them public-looking names, and a test policy stands in for "public"."""

import ipaddress
import threading
import time

import pytest

from support.hostile_http import MARGIN, document, drip, hostile_server, loopback_is_public, names, redirect
from support.pki import CertificateAuthority
from tokenmint import outbound
from tokenmint.outbound import PUBLIC_MESSAGE, FetchError, FetchPolicy, fetch_json

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}


def fetch_threads() -> int:
    return sum(thread.name == "tokenmint-fetch" for thread in threading.enumerate())


def wait_until(condition, limit: float = 3.0) -> bool:
    stop = time.monotonic() + limit
    while time.monotonic() < stop:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def listening():
    """One well-behaved host for the tests that must show a fetch never reached it."""
    with hostile_server({"/jwks": document(JWKS)}) as host:
        yield host


def test_given_a_host_that_serves_a_jwk_set_when_fetched_then_the_document():
    with hostile_server({"/jwks": document(JWKS)}) as host:
        assert fetch_json(host.url("/jwks", "keys.example"), loopback_is_public()) == JWKS
        assert host.seen[0].headers["Host"] == f"keys.example:{host.port}"  # the URL's name, not the address


def test_given_a_host_that_drips_one_byte_at_a_time_when_fetched_then_it_fails_at_the_deadline():
    with hostile_server({"/jwks": drip(0.3)}) as host:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            fetch_json(host.url("/jwks", "keys.example"), loopback_is_public(deadline=1.0))
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 1.0 + MARGIN
        assert "1 s" in info.value.detail
        assert wait_until(lambda: fetch_threads() == 0)  # the socket was shut down: the worker ended too


def test_given_a_resolver_that_hangs_when_fetched_then_it_fails_at_the_deadline_and_the_worker_ends_later():
    released = threading.Event()

    def slow_dns(host: str, port: int) -> list[str]:
        released.wait(5)  # getaddrinfo cannot be interrupted: only the caller stops waiting
        return ["127.0.0.1"]

    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch_json("https://keys.example/jwks", loopback_is_public(deadline=0.5, resolve=slow_dns))
    assert 0.5 <= time.monotonic() - started < 0.5 + MARGIN
    assert "resolving" in info.value.detail
    released.set()
    assert wait_until(lambda: fetch_threads() == 0)


@pytest.mark.parametrize("status, target", [
    (302, "http://127.0.0.1:{port}/target"),  # loopback
    (301, "http://keys.example:{port}/target"),  # the same host: no redirect is followed at all
    (307, "/target"),  # relative
    (308, "http://10.0.0.8/latest/meta-data"),  # private
    (303, "http://169.254.169.254/latest/meta-data/"),  # the instance metadata service
])
def test_given_a_redirect_when_fetched_then_refused_and_its_target_never_asked(status, target):
    with hostile_server() as host:
        host.routes["/jwks"] = redirect(target.format(port=host.port), status)
        host.routes["/target"] = document(JWKS)
        with pytest.raises(FetchError) as info:
            fetch_json(host.url("/jwks", "keys.example"), loopback_is_public())
        assert host.paths() == ["/jwks"]
        assert "redirects are not followed" in info.value.detail


@pytest.mark.parametrize("addresses", [
    "127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "fd00::1", "fe80::1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1",
    ["93.184.215.14", "127.0.0.1"],  # every address is checked, not just the first
])
def test_given_a_name_that_resolves_to_a_private_address_when_fetched_by_the_public_policy_then_refused(
        listening, addresses):
    seen = len(listening.seen)
    policy = FetchPolicy(deadline=2.0, resolve=names({"keys.example": addresses}))  # otherwise the public one
    with pytest.raises(FetchError) as info:
        fetch_json(f"https://keys.example:{listening.port}/jwks", policy)
    assert "may not reach" in info.value.detail
    assert len(listening.seen) == seen


def test_given_the_public_policy_then_public_addresses_pass_and_plain_http_does_not():
    assert outbound.public_address(ipaddress.ip_address("93.184.215.14"))
    assert outbound.public_address(ipaddress.ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c"))
    with pytest.raises(FetchError, match=PUBLIC_MESSAGE) as info:
        fetch_json("http://keys.example/jwks", FetchPolicy(resolve=names({"keys.example": "93.184.215.14"})))
    assert "over http" in info.value.detail


@pytest.mark.parametrize("url", ["ftp://keys.example/jwks", "file:///etc/passwd", "https://user:pw@keys.example/",
                                 "https:///jwks", "https://keys.example:99999/", "https://[::1/"])
def test_given_a_url_that_is_not_https_to_a_host_then_refused_without_resolving(url):
    calls: list[str] = []
    with pytest.raises(FetchError):
        fetch_json(url, loopback_is_public(resolve=names({}, calls)))
    assert calls == []


def test_given_a_name_that_rebinds_after_the_check_when_fetched_then_the_checked_address_is_used():
    calls: list[str] = []
    answers = iter(["127.0.0.1", "10.255.255.1"])  # the second answer would be a private address

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return [next(answers)]

    with hostile_server({"/jwks": document(JWKS)}) as host:
        assert fetch_json(host.url("/jwks", "keys.example"), loopback_is_public(resolve=rebinding)) == JWKS
    assert calls == ["keys.example"]  # resolved once: what was checked is what was connected to


def test_given_https_when_fetched_then_the_certificate_must_name_the_url_host_and_sni_carries_it(tmp_path):
    import ssl

    authority = CertificateAuthority(tmp_path / "ca")
    client = ssl.create_default_context(cafile=str(authority.cert_file))
    for hosts, expected in ((("keys.example",), JWKS), (("other.example",), None)):
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(*authority.issue_server(hosts).pair)
        with hostile_server({"/jwks": document(JWKS)}, tls=server_context) as host:
            policy = loopback_is_public(tls=client, http_allowed=outbound.no_address)
            if expected is not None:
                assert fetch_json(host.url("/jwks", "keys.example"), policy) == expected
                assert host.server_names == ["keys.example"]
            else:
                with pytest.raises(FetchError) as info:
                    fetch_json(host.url("/jwks", "keys.example"), policy)
                assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail
                assert host.seen == []


@pytest.mark.parametrize("body, why", [
    (b"[1, 2, 3]", "not an object"),
    (b"[" * 5000 + b"]" * 5000, "deeper"),
    (b'{"keys": ' + b"[" * 40 + b"]" * 40 + b"}", "deeper"),
    (b"<html>hello</html>", "did not answer JSON"),
    (b'{"keys": []', "did not answer JSON"),
    (b"\xff\xfe{}", "did not answer JSON"),
    (b'{"keys": "' + b"x" * 70_000 + b'"}', "more than"),
])
def test_given_a_document_that_is_not_a_bounded_json_object_when_fetched_then_one_fetch_error(body, why):
    with hostile_server({"/jwks": document(body)}) as host:
        with pytest.raises(FetchError) as info:
            fetch_json(host.url("/jwks", "keys.example"), loopback_is_public())
    assert why in info.value.detail


def test_given_any_failure_when_fetched_then_the_message_is_the_same_and_only_the_detail_differs():
    details = []
    with hostile_server({"/drip": drip(0.3), "/html": document(b"<html/>", content_type="text/html"),
                         "/moved": redirect("http://127.0.0.1/"), "/array": document([1])}) as host:
        with hostile_server() as gone:
            refused = gone.url("/jwks", "keys.example")  # its port is closed once the block ends
        for url, policy in [
            (refused, loopback_is_public()),
            (host.url("/missing", "keys.example"), loopback_is_public()),
            (host.url("/html", "keys.example"), loopback_is_public()),
            (host.url("/drip", "keys.example"), loopback_is_public(deadline=0.5)),
            (host.url("/moved", "keys.example"), loopback_is_public()),
            (host.url("/array", "keys.example"), loopback_is_public()),
            ("https://internal.example/jwks", FetchPolicy(resolve=names({"internal.example": "10.0.0.1"}))),
            ("https://nowhere.example/jwks", loopback_is_public()),
        ]:
            with pytest.raises(FetchError) as info:
                fetch_json(url, policy)
            assert str(info.value) == PUBLIC_MESSAGE
            details.append(info.value.detail)
    assert len(set(details)) == len(details)  # ... and the audit log can tell them apart


def test_given_a_post_when_sent_then_the_body_and_headers_reach_the_host_and_the_answer_comes_back():
    with hostile_server({"/introspect": document({"active": True})}) as host:
        answer = fetch_json(host.url("/introspect", "keys.example"), loopback_is_public(), data=b"token=t",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer == {"active": True}
    assert (host.seen[0].method, host.seen[0].body) == ("POST", b"token=t")


def test_given_an_error_answer_when_exchanged_then_its_status_and_json_body_come_back():
    with hostile_server({"/token": document({"error": "invalid_client"}, 401), "/html": document(b"<p/>", 500)}) as host:
        assert outbound.exchange_json(host.url("/token", "keys.example"), loopback_is_public()) == (
            401, {"error": "invalid_client"})
        assert outbound.exchange_json(host.url("/html", "keys.example"), loopback_is_public()) == (500, None)


def test_given_every_worker_stuck_in_dns_when_another_fetch_starts_then_it_fails_at_its_deadline_without_a_thread():
    released = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        released.wait(5)
        return ["127.0.0.1"]

    try:
        for _ in range(outbound.MAX_WORKERS):
            with pytest.raises(FetchError):
                fetch_json("https://keys.example/", loopback_is_public(deadline=0.02, resolve=stuck))
        assert fetch_threads() == outbound.MAX_WORKERS
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            fetch_json("https://keys.example/", loopback_is_public(deadline=0.3, resolve=stuck))
        assert time.monotonic() - started < 0.3 + MARGIN
        assert "still running" in info.value.detail
        assert fetch_threads() == outbound.MAX_WORKERS  # no thread beyond the bound
    finally:
        released.set()
    assert wait_until(lambda: fetch_threads() == 0)


# -- the `tokenmint token` command sends client credentials through the same rules ---------------
def run_token_command(issuer: str) -> None:
    from tokenmint import cli

    args = cli.build_parser().parse_args(["token", "--issuer", issuer, "--client-id", "c1", "--client-secret", "pw"])
    args.func(args)


def test_given_a_token_endpoint_that_redirects_when_the_token_command_runs_then_no_credentials_go_elsewhere():
    from tokenmint.admin import AdminError

    with hostile_server({"/token": document({"access_token": "stolen"})}) as elsewhere:
        with hostile_server() as issuer:
            issuer.routes["/.well-known/oauth-authorization-server"] = document(
                {"issuer": issuer.url(""), "token_endpoint": issuer.url("/token")})
            issuer.routes["/token"] = redirect(elsewhere.url("/token"), 302)
            with pytest.raises(AdminError, match="redirects are not followed"):
                run_token_command(issuer.url(""))
            assert issuer.seen[-1].headers["Authorization"].startswith("Basic ")
        assert elsewhere.seen == []


def test_given_discovery_that_redirects_when_the_token_command_runs_then_it_stops_there():
    from tokenmint.admin import AdminError

    with hostile_server() as issuer:
        issuer.routes["/.well-known/oauth-authorization-server"] = redirect("/moved")
        with pytest.raises(AdminError, match="redirects are not followed"):
            run_token_command(issuer.url(""))
        assert issuer.paths() == ["/.well-known/oauth-authorization-server"]
