"""Suite-wide guards: no test may reach the network or a model hub."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

# Set before any test module imports transformers/diffusers/huggingface_hub.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class NetworkAccessBlocked(RuntimeError):
    """A test tried to open a connection off this machine."""


def _is_local(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        raise NetworkAccessBlocked(f"tests may not connect to {address!r}")
    return _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        raise NetworkAccessBlocked(f"tests may not connect to {address!r}")
    return _original_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _block_network() -> object:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _original_connect_ex  # type: ignore[method-assign]


@pytest.fixture
def single_thread() -> object:
    """One torch thread: multi-threaded CPU scatter-adds (nerfacto's hash-grid backward) sum
    in a varying order, so bit-for-bit comparisons of two training runs need one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
