"""Real Azure IoT SDK devices with recorded handlers, and the REST calls tests share."""

from __future__ import annotations

import json
import queue
from typing import Any, Callable

from azure.iot.device import (
    IoTHubDeviceClient,
    Message,
    MethodResponse,
    ProvisioningDeviceClient,
)

from harness import THERMOSTAT_ID, Rest, Server, call, q


# --------------------------------------------------------------------------------------------
# SDK devices


class Device:
    """A real `IoTHubDeviceClient` with handlers that record what arrives."""

    def __init__(self, server: Server, device_id: str, key: str, client: IoTHubDeviceClient):
        self.server = server
        self.device_id = device_id
        self.key = key
        self.client = client
        self.patches: "queue.Queue[dict]" = queue.Queue()
        self.methods: "queue.Queue[tuple[str, Any]]" = queue.Queue()
        self.messages: "queue.Queue[Message]" = queue.Queue()
        # (name, payload) -> (status, payload), or None to leave the request unanswered.
        self.responder: Callable[[str, Any], tuple[int, Any] | None] = (
            lambda name, payload: (200, {"method": name, "echo": payload})
        )
        self.method_errors: list[BaseException] = []

    # handlers ---------------------------------------------------------------------------

    def _on_patch(self, patch: dict) -> None:
        self.patches.put(patch)

    def _on_method(self, request: Any) -> None:
        self.methods.put((request.name, request.payload))
        answer = self.responder(request.name, request.payload)
        if answer is None:
            return
        status, payload = answer
        try:
            self.client.send_method_response(
                MethodResponse.create_from_method_request(request, status, payload)
            )
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.method_errors.append(e)

    def _on_message(self, message: Message) -> None:
        self.messages.put(message)

    def handle_patches(self) -> None:
        call(setattr, self.client, "on_twin_desired_properties_patch_received", self._on_patch,
             what="setting the desired-patch handler (SUBSCRIBE)")

    def handle_methods(self) -> None:
        call(setattr, self.client, "on_method_request_received", self._on_method,
             what="setting the method handler (SUBSCRIBE)")

    def handle_messages(self) -> None:
        call(setattr, self.client, "on_message_received", self._on_message,
             what="setting the message handler (SUBSCRIBE)")

    # calls, each with a timeout ------------------------------------------------------------

    def connect(self) -> None:
        call(self.client.connect, what=f"{self.device_id}: connect()")

    def disconnect(self) -> None:
        call(self.client.disconnect, what=f"{self.device_id}: disconnect()")

    def get_twin(self) -> dict:
        return call(self.client.get_twin, what=f"{self.device_id}: get_twin()")

    def report(self, patch: dict) -> None:
        call(self.client.patch_twin_reported_properties, patch,
             what=f"{self.device_id}: patch_twin_reported_properties()")

    def send_json(self, body: Any, component: str | None = None) -> None:
        message = Message(json.dumps(body), content_encoding="utf-8",
                          content_type="application/json")
        if component:
            message.custom_properties["$.sub"] = component
        call(self.client.send_message, message, what=f"{self.device_id}: send_message()")

    def next_patch(self, timeout: float = 10) -> dict:
        try:
            return self.patches.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.device_id} received no desired patch within {timeout} s") from None

    def next_method(self, timeout: float = 10) -> tuple[str, Any]:
        try:
            return self.methods.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.device_id} received no method request within {timeout} s") from None

    def shutdown(self) -> None:
        try:
            call(self.client.shutdown, timeout=10, what=f"{self.device_id}: shutdown()")
        except BaseException:  # noqa: BLE001 - best effort at teardown
            pass


class Devices:
    """Creates SDK clients for a server and shuts every one of them down at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.created: list[Device] = []

    def provision(self, device_id: str, model_id: str | None = THERMOSTAT_ID,
                  key: str | None = None) -> Any:
        """Registers through DPS with the SDK; returns the RegistrationResult."""
        key = key or self.server.device_key(device_id)
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=self.server.host, registration_id=device_id,
            id_scope=self.server.id_scope, symmetric_key=key,
            server_verification_cert=self.server.ca,
        )
        if model_id is not None:
            client.provisioning_payload = {"modelId": model_id}
        try:
            return call(client.register, timeout=30, what=f"{device_id}: register()")
        finally:
            try:
                call(client.shutdown, timeout=5)
            except BaseException:  # noqa: BLE001
                pass

    def client(self, device_id: str, key: str | None = None, hostname: str | None = None,
               **kwargs: Any) -> Device:
        key = key or self.server.device_key(device_id)
        kwargs.setdefault("keep_alive", 30)
        client = IoTHubDeviceClient.create_from_symmetric_key(
            symmetric_key=key, hostname=hostname or self.server.host, device_id=device_id,
            server_verification_cert=self.server.ca, **kwargs,
        )
        device = Device(self.server, device_id, key, client)
        self.created.append(device)
        return device

    def connected(self, device_id: str, model_id: str | None = THERMOSTAT_ID,
                  patches: bool = True, methods: bool = True, **kwargs: Any) -> Device:
        """Provisions through DPS, connects to the assigned hub, and sets the handlers."""
        result = self.provision(device_id, model_id)
        assert result.status == "assigned", result
        device = self.client(device_id, hostname=result.registration_state.assigned_hub, **kwargs)
        device.connect()
        if patches:
            device.handle_patches()
        if methods:
            device.handle_methods()
        return device

    def shutdown_all(self) -> None:
        for device in self.created:
            device.shutdown()


# --------------------------------------------------------------------------------------------
# REST helpers the tests share


def run_command(rest: Rest, device_id: str, name: str, request: Any = None,
                component: str | None = None, response_timeout: int = 10,
                connection_timeout: int = 0):
    path = f"/devices/{q(device_id)}"
    if component:
        path += f"/components/{q(component)}"
    path += f"/commands/{q(name)}"
    body: dict[str, Any] = {"responseTimeout": response_timeout,
                            "connectionTimeout": connection_timeout}
    if request is not None:
        body["request"] = request
    return rest.post(path, body, timeout=response_timeout + connection_timeout + 15)


class Bystander:
    """A second, well-behaved device on the same server: after each attack it must still do
    device-initiated work (twin round trip) and answer a command invoked through REST."""

    def __init__(self, server: Server, device: Device) -> None:
        self.server = server
        self.device = device
        self.count = 0

    def check(self) -> None:
        self.count += 1
        mark = f"2024-01-01T00:00:{self.count % 60:02d}Z"  # the command's request is a dateTime
        self.device.report({"bystanderMark": mark})
        twin = self.device.get_twin()
        assert twin["reported"].get("bystanderMark") == mark, twin
        response = run_command(self.server.rest, self.device.device_id, "getMaxMinReport",
                               request=mark, response_timeout=10)
        assert response.status == 201, f"bystander command: {response!r}"
        assert response.body["responseCode"] == 200, response
        assert response.body["response"] == {"method": "getMaxMinReport", "echo": mark}, response
