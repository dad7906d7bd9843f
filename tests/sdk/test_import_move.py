"""A move from one application to another, end to end: two Flotilla servers on loopback, the
first standing in for IoT Central. Real SDK devices connected to the source implement
Microsoft's migrator convention (a `DeviceMove` command in a "Device Migration" component) by
provisioning again through DPS at the host and ID scope the payload names, and reconnecting
where DPS assigns them. After `flotilla import` and `flotilla import move --group north`, the
north group's SDK devices are connected to the target with their old keys and a property job on
the target reaches them; the south group stays on the source; `--back` returns north. The other
devices of each group are records only (no connection): the move reports each of them as not
moved, with the source job's status and reason, and exits non-zero."""

from __future__ import annotations

import copy
import json
import os
import queue
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from azure.iot.device import IoTHubDeviceClient, MethodResponse, ProvisioningDeviceClient

from harness import CONTROLLER_TEMPLATE, Response, Server, call, q, start_server, wait_for

pytestmark = pytest.mark.timeout(300)

MOVABLE_ID = "dtmi:contoso:movablecontroller;1"
# Records only: devices the move cannot reach (no connection), besides the SDK devices.
RECORDS_PER_GROUP = 26
SDK_PER_GROUP = 2
DEVICE_TIMEOUT = 5


def movable_template() -> dict:
    """The temperature controller with a "Device Migration" component (the migrator's
    convention: interface dtmi:azureiot:DeviceMigration;1, command DeviceMove)."""
    template = copy.deepcopy(json.loads(CONTROLLER_TEMPLATE.read_text()))
    template["@id"] = MOVABLE_ID
    template["displayName"] = "Movable Controller"
    template["capabilityModel"]["@id"] = "dtmi:com:example:MovableController;1"
    template["capabilityModel"]["contents"].append({
        "@type": "Component",
        "name": "migration",
        "displayName": "Device Migration",
        "schema": {
            "@id": "dtmi:azureiot:DeviceMigration;1",
            "@type": "Interface",
            "displayName": "Device Migration",
            "contents": [{
                "@type": "Command",
                "name": "DeviceMove",
                "displayName": "Device Move",
                "request": {
                    "name": "request",
                    "schema": {
                        "@type": "Object",
                        "fields": [
                            {"name": "idScope", "schema": "string"},
                            {"name": "host", "schema": "string"},
                        ],
                    },
                },
            }],
        },
    })
    return template


class MovableDevice:
    """A real SDK device that provisions through DPS, connects where DPS assigns it, answers
    `migration*DeviceMove` and then moves (shut down, provision at the payload's host and ID
    scope with the same key, reconnect), and acknowledges `thermostat1.targetTemperature` per
    Plug and Play."""

    def __init__(self, device_id: str, key: str, trusted: dict[str, str], host: str,
                 scope: str) -> None:
        self.id = device_id
        self.key = key
        # The CA each host's certificate chains to (both development CAs have the same name, so
        # one bundle of both would not do: the device picks by the host it dials).
        self.trusted = trusted
        self.client: IoTHubDeviceClient | None = None
        self.hub = ""
        self.moves: "queue.Queue[str]" = queue.Queue()  # the hub after each move
        self.patches: "queue.Queue[dict]" = queue.Queue()
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self._connect(host, scope)

    def _connect(self, host: str, scope: str) -> None:
        provisioning = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=host, registration_id=self.id, id_scope=scope,
            symmetric_key=self.key, server_verification_cert=self.trusted[host],
        )
        provisioning.provisioning_payload = {"modelId": MOVABLE_ID}
        try:
            result = call(provisioning.register, timeout=30, what=f"{self.id}: register()")
        finally:
            try:
                call(provisioning.shutdown, timeout=5)
            except BaseException:  # noqa: BLE001
                pass
        assert result.status == "assigned", result
        hub = result.registration_state.assigned_hub
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=self.key, hostname=hub, device_id=self.id,
            server_verification_cert=self.trusted[hub], keep_alive=30,
        )
        call(client.connect, what=f"{self.id}: connect()")
        call(setattr, client, "on_method_request_received", self._on_method)
        call(setattr, client, "on_twin_desired_properties_patch_received", self._on_patch)
        with self.lock:
            self.client, self.hub = client, hub

    def _on_method(self, request: Any) -> None:
        client = self.client
        if request.name != "migration*DeviceMove":
            client.send_method_response(MethodResponse.create_from_method_request(request, 404, None))
            return
        payload = request.payload
        client.send_method_response(
            MethodResponse.create_from_method_request(request, 200, {"moving": payload.get("host")}))
        threading.Thread(target=self._move, args=(client, payload), daemon=True).start()

    def _move(self, old: IoTHubDeviceClient, payload: dict) -> None:
        try:
            call(old.shutdown, timeout=10, what=f"{self.id}: shutdown() before moving")
            self._connect(payload["host"], payload["idScope"])
            self.moves.put(self.hub)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            self.errors.append(e)
            self.moves.put(f"error: {e!r}")

    def _on_patch(self, patch: dict) -> None:
        value = patch.get("thermostat1", {}).get("targetTemperature")
        if value is None:
            return
        self.patches.put(patch)
        self.client.patch_twin_reported_properties({"thermostat1": {
            "__t": "c",
            "targetTemperature": {"value": value, "ac": 200, "av": patch["$version"],
                                  "ad": "completed"},
        }})

    def next_move(self, timeout: float = 60) -> str:
        try:
            return self.moves.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.id} did not move within {timeout} s") from None

    def shutdown(self) -> None:
        if self.client is not None:
            try:
                call(self.client.shutdown, timeout=10)
            except BaseException:  # noqa: BLE001
                pass


@pytest.fixture
def two_servers(flotilla_bin: Path):
    env = {"FLOTILLA_JOB_DEVICE_TIMEOUT_SECS": str(DEVICE_TIMEOUT)}
    made = []
    try:
        made.append(start_server(flotilla_bin, env=env))
        made.append(start_server(flotilla_bin, env=env))
        yield made
    finally:
        for server in made:
            server.stop()
            print(f"---- server log ({server.host}) ----\n{server.log(60)}")


def flotilla(binary: Path, *args: str, token: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for var in ("FLOTILLA_DATA_DIR", "FLOTILLA_DATABASE_URL", "FLOTILLA_URL", "FLOTILLA_TOKEN"):
        env.pop(var, None)
    env["FLOTILLA_IMPORT_TOKEN"] = token
    env["FLOTILLA_LOG"] = "warn"
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def connected(server: Server, device_id: str) -> bool:
    answer = server.rest.get(f"/devices/{q(device_id)}/connection")
    assert answer.status == 200, answer
    return answer.body["connected"]


def run_job(server: Server, job_id: str, body: dict) -> dict:
    created = server.rest.put(f"/jobs/{job_id}", body)
    assert created.status == 200, created
    wait_for(lambda: server.rest.get(f"/jobs/{job_id}").body["status"]
             in ("complete", "cancelled", "failed"), timeout=60, what=f"job {job_id} to finish")
    return {row["id"]: row for row in list_all(server, f"/jobs/{job_id}/devices")}


def list_all(server: Server, path: str) -> list[dict]:
    """Every item of a list, following its absolute `nextLink`s."""
    items: list[dict] = []
    page = server.rest.get(path)
    while True:
        assert page.status == 200, page
        items.extend(page.body["value"])
        next_link = page.body.get("nextLink")
        if not next_link:
            return items
        request = urllib.request.Request(next_link, headers={"Authorization": server.token})
        with urllib.request.urlopen(request, timeout=30) as answer:
            page = Response(answer.status, json.loads(answer.read()), "")


def test_a_group_moves_to_the_target_and_back(flotilla_bin: Path, two_servers) -> None:
    source, target = two_servers
    published = source.rest.put(f"/deviceTemplates/{q(MOVABLE_ID)}", movable_template())
    assert published.status == 200, published
    groups = {"north": [], "south": []}
    for side in groups:
        for i in range(RECORDS_PER_GROUP + SDK_PER_GROUP):
            device_id = f"{side}-sdk-{i}" if i < SDK_PER_GROUP else f"{side}-{i:03d}"
            made = source.rest.put(f"/devices/{device_id}",
                                   {"displayName": side, "template": MOVABLE_ID})
            assert made.status == 200, made
            groups[side].append(device_id)
        made = source.rest.put(f"/deviceGroups/{side}", {
            "displayName": side, "filter": f'SELECT * FROM devices WHERE $displayName = "{side}"'})
        assert made.status == 200, made

    trusted = {source.host: source.ca, target.host: target.ca}
    sdk = {
        device_id: MovableDevice(device_id, source.device_key(device_id), trusted, source.host,
                                 source.id_scope)
        for side in groups for device_id in groups[side][:SDK_PER_GROUP]
    }
    try:
        _move_and_back(flotilla_bin, source, target, groups, sdk)
    finally:
        for device in sdk.values():
            device.shutdown()


def _move_and_back(flotilla_bin: Path, source: Server, target: Server,
                   groups: dict[str, list[str]], sdk: dict[str, MovableDevice]) -> None:
    assert source.rest.get("/devices/nowhere/connection").status == 404
    for device in sdk.values():
        assert device.hub == source.host
        wait_for(lambda d=device: connected(source, d.id), what=f"{device.id} on the source")

    # The import, into the stopped target; then the target serves the source's application.
    target.stop()
    imported = flotilla(flotilla_bin, "import", "--from", source.base_url,
                        "--data-dir", str(target.data_dir), token=source.token)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    total = sum(len(ids) for ids in groups.values())
    assert f"devices: {total} created, 0 updated" in imported.stdout, imported.stdout
    target.restart()
    scope = target.rest.get("/enrollmentGroups/sas-iot-devices").body["idScope"]
    assert scope == source.id_scope

    def move(*flags: str) -> subprocess.CompletedProcess:
        return flotilla(
            flotilla_bin, "import", "move", "--from", source.base_url,
            "--url", target.base_url, "--token", target.token, "--group", "north",
            "--command", "migration.DeviceMove",
            "--payload", '{"idScope": "{idScope}", "host": "{host}"}',
            "--host", target.host, "--source-host", source.host, "--timeout", "90", *flags,
            token=source.token, timeout=150)

    north_sdk = groups["north"][:SDK_PER_GROUP]
    south_sdk = groups["south"][:SDK_PER_GROUP]
    moved = move("--job-id", "move-north")
    # The records never connected: not moved, so the command exits non-zero.
    assert moved.returncode == 1, moved.stdout + moved.stderr
    lines = moved.stdout.splitlines()
    for device_id in north_sdk:
        assert f"moved {device_id}" in lines, moved.stdout
        assert sdk[device_id].next_move() == target.host
    for device_id in groups["north"][SDK_PER_GROUP:]:
        assert any(line.startswith(f"not moved {device_id}: the departure's job move-north: failed")
                   for line in lines), moved.stdout
    assert f"{SDK_PER_GROUP} of {len(groups['north'])} devices moved" in moved.stdout, moved.stdout
    for device in sdk.values():
        assert not device.errors, device.errors

    # North is on the target, with its old keys (the SDK devices never changed them); south
    # stays on the source.
    for device_id in north_sdk:
        assert sdk[device_id].hub == target.host
        assert connected(target, device_id)
        assert not connected(source, device_id)
    for device_id in south_sdk:
        assert sdk[device_id].hub == source.host
        assert connected(source, device_id)
        assert not connected(target, device_id)
        assert sdk[device_id].moves.empty()

    # A property job on the target reaches the moved devices.
    rows = run_job(target, "after-move", {
        "displayName": "After the move", "group": "north",
        "data": [{"type": "property", "target": MOVABLE_ID,
                  "path": "thermostat1.targetTemperature", "value": 21.5}],
    })
    for device_id in north_sdk:
        assert rows[device_id]["status"] == "completed", rows[device_id]
        assert sdk[device_id].patches.get(timeout=5)["thermostat1"]["targetTemperature"] == 21.5

    # `--back`: a command job on the target sends north to the source again.
    back = move("--back", "--job-id", "back-north")
    assert back.returncode == 1, back.stdout + back.stderr
    for device_id in north_sdk:
        assert f"moved {device_id}" in back.stdout.splitlines(), back.stdout
        assert sdk[device_id].next_move() == source.host
        assert connected(source, device_id)
        assert not connected(target, device_id)
    for device_id in south_sdk:
        assert connected(source, device_id)
