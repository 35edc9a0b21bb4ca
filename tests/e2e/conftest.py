"""The real ``tokenmint serve`` process on 127.0.0.1, driven over HTTP and through the real CLI."""

import pytest

from support.server import Server, read_banner, start_server, stop


@pytest.fixture(scope="module")
def server_process(tmp_path_factory):
    process, server = start_server(tmp_path_factory.mktemp("tokenmint"))
    read_banner(process, server, "/token")
    yield process, server
    stop(process)


@pytest.fixture(scope="module")
def server(server_process) -> Server:
    return server_process[1]
