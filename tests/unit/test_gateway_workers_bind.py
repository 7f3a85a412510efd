"""The sockets of `eventshop gateway --workers N`: one per worker on one port, and a port in use refused."""

from __future__ import annotations

import socket

import pytest

from eventshop.workers import bind


def test_every_worker_gets_a_socket_of_its_own_on_one_port() -> None:
    sockets = bind("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(sockets) == 3 and len(ports) == 1 and ports != {0}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def test_a_port_some_other_server_listens_on_is_refused() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            bind("127.0.0.1", other.getsockname()[1], 2)


def test_a_port_another_gateway_with_workers_serves_is_refused_not_shared() -> None:
    """SO_REUSEPORT alone would let a second gateway of the same user take half of the first one's clients."""
    first = bind("127.0.0.1", 0, 2)
    try:
        for s in first:
            s.listen()
        with pytest.raises(OSError):
            bind("127.0.0.1", first[0].getsockname()[1], 2)
    finally:
        for s in first:
            s.close()
