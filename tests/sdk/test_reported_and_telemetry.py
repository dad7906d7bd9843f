"""4. Reported properties and telemetry sent by the SDK are visible through REST."""

import datetime as dt

from harness import CONTROLLER_ID, wait_for


def rest_json(server, path):
    response = server.rest.get(path)
    assert response.status == 200, f"GET {path}: {response!r}"
    return response.body


def parse_time(value):
    assert isinstance(value, str), value
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_reported_properties_are_visible_through_rest(server, devices):
    device = devices.connected("thermostat-reported", patches=False, methods=False)

    device.report({"maxTempSinceLastReboot": 38.7})
    assert device.get_twin()["reported"]["maxTempSinceLastReboot"] == 38.7

    body = wait_for(
        lambda: (b := rest_json(server, "/devices/thermostat-reported/properties"))
        .get("maxTempSinceLastReboot") == 38.7 and b,
        what="REST to show maxTempSinceLastReboot")
    assert body["maxTempSinceLastReboot"] == 38.7

    # A later report replaces the value; null deletes it (§1.5).
    device.report({"maxTempSinceLastReboot": 40.25})
    wait_for(lambda: rest_json(server, "/devices/thermostat-reported/properties")
             .get("maxTempSinceLastReboot") == 40.25, what="the new value")
    device.report({"maxTempSinceLastReboot": None})
    wait_for(lambda: "maxTempSinceLastReboot" not in
             rest_json(server, "/devices/thermostat-reported/properties"),
             what="the deleted value to disappear")


def test_component_reported_properties_are_visible_through_rest(server, devices):
    device = devices.connected("controller-reported", model_id=CONTROLLER_ID, patches=False,
                               methods=False)

    device.report({"serialNumber": "SN-123",
                   "thermostat1": {"__t": "c", "maxTempSinceLastReboot": 33.5},
                   "thermostat2": {"__t": "c", "maxTempSinceLastReboot": 12.0}})

    component = wait_for(
        lambda: (b := rest_json(server, "/devices/controller-reported/components/thermostat1/properties"))
        .get("maxTempSinceLastReboot") == 33.5 and b,
        what="thermostat1's reported property")
    assert component["maxTempSinceLastReboot"] == 33.5
    assert rest_json(server, "/devices/controller-reported/components/thermostat2/properties")[
        "maxTempSinceLastReboot"] == 12.0
    whole = rest_json(server, "/devices/controller-reported/properties")
    assert whole["serialNumber"] == "SN-123", whole
    assert whole["thermostat1"]["maxTempSinceLastReboot"] == 33.5, whole


def test_telemetry_last_value_is_visible_through_rest(server, devices):
    device = devices.connected("thermostat-telemetry", patches=False, methods=False)

    before = dt.datetime.now(dt.timezone.utc)
    device.send_json({"temperature": 21.5})
    first = wait_for(
        lambda: (r := server.rest.get("/devices/thermostat-telemetry/telemetry/temperature"))
        .status == 200 and r.body.get("value") == 21.5 and r.body,
        what="REST to show the telemetry value")
    stamp = parse_time(first["timestamp"])
    assert before - dt.timedelta(seconds=5) <= stamp <= dt.datetime.now(dt.timezone.utc) + \
        dt.timedelta(seconds=5), first

    device.send_json({"temperature": 23.0})
    second = wait_for(
        lambda: (r := rest_json(server, "/devices/thermostat-telemetry/telemetry/temperature"))
        .get("value") == 23.0 and r,
        what="the newer telemetry value")
    assert parse_time(second["timestamp"]) >= stamp, (first, second)


def test_component_telemetry_is_visible_per_component(server, devices):
    device = devices.connected("controller-telemetry", model_id=CONTROLLER_ID, patches=False,
                               methods=False)

    device.send_json({"workingSet": 1024.5})
    device.send_json({"temperature": 30.5}, component="thermostat1")
    device.send_json({"temperature": 10.25}, component="thermostat2")

    wait_for(lambda: rest_json(server, "/devices/controller-telemetry/components/thermostat1/telemetry/temperature")
             .get("value") == 30.5, what="thermostat1 temperature")
    assert rest_json(server, "/devices/controller-telemetry/components/thermostat2/telemetry/temperature")[
        "value"] == 10.25
    assert rest_json(server, "/devices/controller-telemetry/telemetry/workingSet")["value"] == 1024.5
