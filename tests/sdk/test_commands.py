"""3. Commands invoked through REST are answered by the device (direct methods, §1.6), and the
caller gets the device's status and payload; component commands arrive as `{c}*{name}` (§3)."""

import threading
import time

from harness import CONTROLLER_ID
from sdk_devices import run_command

SINCE = "2024-05-01T10:00:00Z"
REPORT = {"maxTemp": 31.5, "minTemp": 18.25, "avgTemp": 24.0,
          "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"}


def test_command_is_answered_by_the_device(server, devices):
    device = devices.connected("thermostat-cmd", patches=False)
    device.responder = lambda name, payload: (200, REPORT)

    response = run_command(server.rest, "thermostat-cmd", "getMaxMinReport", request=SINCE)

    assert device.next_method(timeout=1) == ("getMaxMinReport", SINCE)
    assert not device.method_errors, device.method_errors
    assert response.status == 201, response
    assert response.body["responseCode"] == 200, response
    assert response.body["response"] == REPORT, response
    assert response.body["request"] == SINCE, response
    command_id = response.body.get("id")
    assert isinstance(command_id, str) and command_id, response

    # The device's own status code is passed through, whatever it is.
    device.responder = lambda name, payload: (409, {"reason": "busy"})
    busy = run_command(server.rest, "thermostat-cmd", "getMaxMinReport", request=SINCE)
    assert busy.status == 201, busy
    assert busy.body["responseCode"] == 409, busy
    assert busy.body["response"] == {"reason": "busy"}, busy
    assert busy.body["id"] != command_id, busy

    history = server.rest.get("/devices/thermostat-cmd/commands/getMaxMinReport")
    assert history.status == 200, history
    entries = {entry.get("id"): entry for entry in history.body["value"]}
    assert command_id in entries, history
    assert entries[command_id]["responseCode"] == 200, history
    assert entries[command_id]["response"] == REPORT, history
    assert entries[busy.body["id"]]["responseCode"] == 409, history


def test_command_without_request_payload(server, devices):
    device = devices.connected("thermostat-noarg", patches=False)
    device.responder = lambda name, payload: (200, None)

    response = run_command(server.rest, "thermostat-noarg", "getMaxMinReport")

    assert response.status == 201, response
    assert device.next_method(timeout=1) == ("getMaxMinReport", None)
    assert response.body["responseCode"] == 200, response
    assert response.body.get("response") is None, response


def test_component_command_is_delivered_as_component_star_name(server, devices):
    device = devices.connected("controller-cmd", model_id=CONTROLLER_ID, patches=False)
    device.responder = lambda name, payload: (
        (200, dict(REPORT, component=name.split("*")[0])) if "*" in name else (404, None))

    response = run_command(server.rest, "controller-cmd", "getMaxMinReport", request=SINCE,
                           component="thermostat1")

    assert device.next_method(timeout=1) == ("thermostat1*getMaxMinReport", SINCE)
    assert response.status == 201, response
    assert response.body["responseCode"] == 200, response
    assert response.body["response"] == dict(REPORT, component="thermostat1"), response

    history = server.rest.get("/devices/controller-cmd/components/thermostat1/commands/getMaxMinReport")
    assert history.status == 200, history
    assert response.body["id"] in [e.get("id") for e in history.body["value"]], history

    # The root component's command keeps its bare name.
    root = run_command(server.rest, "controller-cmd", "reboot", request=3)
    assert device.next_method(timeout=1) == ("reboot", 3)
    assert root.status == 201 and root.body["responseCode"] == 404, root


def test_command_to_an_offline_device_is_device_not_online(server, devices):
    result = devices.provision("thermostat-offline-cmd")
    assert result.status == "assigned", result

    started = time.monotonic()
    response = run_command(server.rest, "thermostat-offline-cmd", "getMaxMinReport",
                           request=SINCE, connection_timeout=0)
    elapsed = time.monotonic() - started
    assert response.status == 404, response
    assert response.error_code() == "DeviceNotOnline", response
    assert elapsed < 5, f"connectionTimeout 0 must not wait ({elapsed:.1f} s)"


def test_command_waits_up_to_connection_timeout_for_the_device(server, devices):
    result = devices.provision("thermostat-late-cmd")
    assert result.status == "assigned", result
    outcome = {}

    def invoke():
        outcome["response"] = run_command(server.rest, "thermostat-late-cmd", "getMaxMinReport",
                                          request=SINCE, connection_timeout=20)

    caller = threading.Thread(target=invoke, daemon=True)
    caller.start()
    time.sleep(1.0)
    assert caller.is_alive(), f"the call must wait for the device: {outcome}"

    device = devices.client("thermostat-late-cmd", hostname=result.registration_state.assigned_hub)
    device.responder = lambda name, payload: (200, REPORT)
    device.connect()
    device.handle_methods()
    caller.join(30)
    assert not caller.is_alive(), "the command call did not return"
    response = outcome["response"]
    assert response.status == 201, response
    assert response.body["responseCode"] == 200 and response.body["response"] == REPORT, response


def test_command_the_device_does_not_answer_is_gateway_timeout(server, devices):
    device = devices.connected("thermostat-silent", patches=False)
    device.responder = lambda name, payload: None  # receives, never answers

    started = time.monotonic()
    response = run_command(server.rest, "thermostat-silent", "getMaxMinReport", request=SINCE,
                           response_timeout=5)
    elapsed = time.monotonic() - started

    assert device.next_method(timeout=1) == ("getMaxMinReport", SINCE)
    assert response.status == 504, response
    assert response.error_code() == "GatewayTimeout", response
    assert 4.5 <= elapsed < 12, f"responseTimeout is 5 s, took {elapsed:.1f} s"

