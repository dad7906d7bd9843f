"""2. Writable properties set through REST reach the device, which acknowledges them per Plug
and Play; REST shows the acknowledgement. 6. A device that was offline gets them when it next
connects."""

from harness import CONTROLLER_ID, get_nothing, wait_for


def properties(server, device_id, component=None):
    path = f"/devices/{device_id}"
    if component:
        path += f"/components/{component}"
    response = server.rest.get(path + "/properties")
    assert response.status == 200, response
    return response.body


def metadata(body, name):
    meta = body.get("$metadata")
    assert isinstance(meta, dict), f"no $metadata object in {body}"
    return meta.get(name) or {}


def wait_for_ack(server, device_id, name, version, component=None):
    def acked():
        body = properties(server, device_id, component)
        return body if body.get("$metadata", {}).get(name, {}).get("ackVersion") == version else None

    return wait_for(acked, timeout=10, what=f"REST to show the ack of {name} version {version}")


def test_desired_property_reaches_device_and_ack_shows_in_rest(server, devices):
    device = devices.connected("thermostat-props")

    sent = server.rest.patch("/devices/thermostat-props/properties", {"targetTemperature": 56})
    assert sent.status == 202, sent

    patch = device.next_patch()
    assert patch.get("targetTemperature") == 56, patch
    version = patch.get("$version")
    assert isinstance(version, int), f"a desired patch must carry $version (§1.5): {patch}"
    assert set(patch) == {"targetTemperature", "$version"}, f"the patch is the diff (§1.5): {patch}"

    # Pending: the desired value is known, no acknowledgement of this version yet.
    pending = metadata(properties(server, "thermostat-props"), "targetTemperature")
    assert pending.get("desiredValue") == 56, pending
    assert pending.get("desiredVersion") == version, pending
    assert pending.get("ackVersion") != version, pending

    twin = device.get_twin()
    assert twin["desired"]["targetTemperature"] == 56, twin
    assert twin["desired"]["$version"] == version, twin

    # The Plug and Play acknowledgement (§3): value, ac, av, ad.
    device.report({"targetTemperature": {"value": 56, "ac": 200, "av": version, "ad": "completed"}})

    body = wait_for_ack(server, "thermostat-props", "targetTemperature", version)
    meta = body["$metadata"]["targetTemperature"]
    assert meta["ackCode"] == 200, meta
    assert meta["ackDescription"] == "completed", meta
    assert meta["desiredValue"] == 56, meta
    assert meta["desiredVersion"] == version, meta
    assert body["targetTemperature"] == 56, body


def test_rejected_desired_property_ack_is_recorded(server, devices):
    device = devices.connected("thermostat-reject")

    assert server.rest.patch("/devices/thermostat-reject/properties",
                             {"targetTemperature": 20}).status == 202
    first = device.next_patch()
    device.report({"targetTemperature": {"value": 20, "ac": 200, "av": first["$version"],
                                         "ad": "completed"}})
    wait_for_ack(server, "thermostat-reject", "targetTemperature", first["$version"])

    assert server.rest.patch("/devices/thermostat-reject/properties",
                             {"targetTemperature": 999}).status == 202
    second = device.next_patch()
    assert second.get("targetTemperature") == 999, second
    assert second["$version"] > first["$version"], (first, second)

    # Not accepted: the device keeps 20 and says why (ac 400, value = the value in use).
    device.report({"targetTemperature": {"value": 20, "ac": 400, "av": second["$version"],
                                         "ad": "out of range"}})
    body = wait_for_ack(server, "thermostat-reject", "targetTemperature", second["$version"])
    meta = body["$metadata"]["targetTemperature"]
    assert meta["ackCode"] == 400, meta
    assert meta["ackDescription"] == "out of range", meta
    assert meta["desiredValue"] == 999, meta
    assert meta["desiredVersion"] == second["$version"], meta
    assert body["targetTemperature"] == 20, body


def test_component_desired_property_reaches_device_with_component_marker(server, devices):
    device = devices.connected("controller-props", model_id=CONTROLLER_ID)

    sent = server.rest.patch("/devices/controller-props/components/thermostat1/properties",
                             {"targetTemperature": 21.5})
    assert sent.status == 202, sent
    patch = device.next_patch()
    assert patch.get("thermostat1") == {"__t": "c", "targetTemperature": 21.5}, patch
    version = patch.get("$version")
    assert isinstance(version, int), patch
    assert "thermostat2" not in patch and "targetTemperature" not in patch, patch

    device.report({"thermostat1": {"__t": "c", "targetTemperature": {
        "value": 21.5, "ac": 200, "av": version, "ad": "completed"}}})
    body = wait_for_ack(server, "controller-props", "targetTemperature", version,
                        component="thermostat1")
    meta = body["$metadata"]["targetTemperature"]
    assert meta["ackCode"] == 200 and meta["desiredValue"] == 21.5, meta
    assert body["targetTemperature"] == 21.5, body

    # The whole-device form names the component.
    sent = server.rest.patch("/devices/controller-props/properties",
                             {"thermostat2": {"targetTemperature": 30}})
    assert sent.status == 202, sent
    patch2 = device.next_patch()
    assert patch2.get("thermostat2") == {"__t": "c", "targetTemperature": 30}, patch2
    assert patch2["$version"] > version, patch2
    assert "thermostat1" not in patch2, f"only the change is sent (§1.5): {patch2}"
    # thermostat2 is not acknowledged yet: pending there, thermostat1 unaffected.
    pending = metadata(properties(server, "controller-props", "thermostat2"), "targetTemperature")
    assert pending.get("desiredValue") == 30, pending
    assert pending.get("ackVersion") != patch2["$version"], pending
    meta1 = metadata(properties(server, "controller-props", "thermostat1"), "targetTemperature")
    assert meta1.get("ackVersion") == version and meta1.get("desiredValue") == 21.5, meta1


def test_offline_device_gets_property_when_the_same_client_reconnects(server, devices):
    device = devices.connected("thermostat-offline")
    device.disconnect()
    assert not device.client.connected

    sent = server.rest.patch("/devices/thermostat-offline/properties", {"targetTemperature": 42})
    assert sent.status == 202, sent
    desired_version = metadata(properties(server, "thermostat-offline"),
                               "targetTemperature").get("desiredVersion")
    assert isinstance(desired_version, int), "REST must show the desired version while pending"
    get_nothing(device.patches, 0.5)

    # At connect the SDK GETs the twin (the desired handler is set) and synthesizes a patch
    # from it when $version moved (§1.7).
    device.connect()
    patch = device.next_patch()
    assert patch.get("targetTemperature") == 42, patch
    assert patch.get("$version") == desired_version, patch
    assert device.get_twin()["desired"]["targetTemperature"] == 42

    device.report({"targetTemperature": {"value": 42, "ac": 200, "av": desired_version,
                                         "ad": "completed"}})
    body = wait_for_ack(server, "thermostat-offline", "targetTemperature", desired_version)
    assert body["$metadata"]["targetTemperature"]["ackCode"] == 200, body


def test_never_connected_device_gets_property_set_before_its_first_connection(server, devices):
    result = devices.provision("thermostat-late")
    assert result.status == "assigned", result
    sent = server.rest.patch("/devices/thermostat-late/properties", {"targetTemperature": 17})
    assert sent.status == 202, sent

    device = devices.client("thermostat-late", hostname=result.registration_state.assigned_hub)
    device.connect()
    twin = device.get_twin()
    assert twin["desired"].get("targetTemperature") == 17, twin

    # A device that starts with its handler set gets the desired state as a patch at once.
    fresh = devices.client("thermostat-late", hostname=result.registration_state.assigned_hub)
    device.shutdown()
    fresh.handle_patches()  # auto-connects, subscribes, GETs the twin
    patch = fresh.next_patch()
    assert patch.get("targetTemperature") == 17, patch
    assert patch.get("$version") == twin["desired"]["$version"], patch

