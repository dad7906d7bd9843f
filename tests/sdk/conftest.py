"""Fixtures: the flotilla binary, a fresh server per test (own data dir, own 127.0.0.N), and
real Azure IoT SDK devices with recorded handlers, all shut down afterwards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from harness import REPO, Server, start_server
from sdk_devices import Bystander, Devices


@pytest.fixture(scope="session")
def flotilla_bin() -> Path:
    path = Path(os.environ.get("FLOTILLA_BIN") or REPO / "target" / "debug" / "flotilla")
    if not path.is_file() or not os.access(path, os.X_OK):
        # A failure, not a skip: a suite that silently tests nothing must not pass.
        pytest.fail(f"no flotilla binary at {path}; run `cargo build -p flotilla` or set FLOTILLA_BIN")
    return path


def _server(flotilla_bin: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    server = start_server(flotilla_bin, env=env)
    try:
        yield server
    finally:
        status = server.status()
        server.stop()
        print(f"---- at teardown: {status}")
        # Shown only for failing tests (captured output).
        print(f"---- server log ({server.host}) ----\n{server.log(80)}")
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture
def server(flotilla_bin: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """`@pytest.mark.server_env(NAME="value", ...)` adds to the server's environment (e.g.
    FLOTILLA_JOB_DEVICE_TIMEOUT_SECS); the closest marker wins."""
    marker = request.node.get_closest_marker("server_env")
    env = {k: str(v) for k, v in marker.kwargs.items()} if marker else None
    yield from _server(flotilla_bin, env)


@pytest.fixture(scope="module")
def shared_server(flotilla_bin: Path) -> Iterator[Server]:
    """One server for a module's many small cases (the malformed-packet table)."""
    yield from _server(flotilla_bin)


@pytest.fixture
def devices(server: Server) -> Iterator[Devices]:
    made = Devices(server)
    try:
        yield made
    finally:
        made.shutdown_all()


@pytest.fixture
def bystander(server: Server, devices: Devices) -> Bystander:
    return Bystander(server, devices.connected("bystander", patches=False))


@pytest.fixture(scope="module")
def shared_bystander(shared_server: Server) -> Iterator[Bystander]:
    made = Devices(shared_server)
    try:
        yield Bystander(shared_server, made.connected("bystander", patches=False))
    finally:
        made.shutdown_all()
