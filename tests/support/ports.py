"""Ports for servers the tests start themselves (MLflow, Ray's head and worker)."""

from __future__ import annotations

import random
import socket

# Ray takes its worker ports from 10002-19999 (`ray start --min-worker-port/--max-worker-port`) and
# every other port it opens at random between the kernel's first ephemeral port (32768 on Linux) and
# 65535 (ray/_private/node.py, `_get_unused_port`). A port the tests hand to a server that boots
# later (MLflow takes ~10 s to bind) therefore comes from the gap between the two, or a Ray process
# starting meanwhile can take it first.
_LOW, _HIGH = 20000, 32767
_handed_out: set[int] = set()


def free_port() -> int:
    """A port in 20000-32767 that is free now and that no earlier call returned."""
    for _ in range(200):
        port = random.randint(_LOW, _HIGH)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_LOW}-{_HIGH} after 200 tries")


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
