import socket

import pytest
from conftest import NetworkAccessBlocked


def test_outside_connections_are_refused() -> None:
    with socket.socket() as sock, pytest.raises(NetworkAccessBlocked):
        sock.connect(("192.0.2.1", 443))


def test_loopback_connections_are_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            accepted.close()
