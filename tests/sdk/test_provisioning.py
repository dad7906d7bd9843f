"""1. DPS provisioning with a group-derived key and a model id, then the hub connection."""

from harness import THERMOSTAT_ID, q


def test_dps_provisions_a_new_device_with_group_derived_key_and_model_id(server, devices):
    device_id = "thermostat-dps-01"
    assert server.rest.get(f"/devices/{device_id}").status == 404, "the device must not exist yet"

    result = devices.provision(device_id, model_id=THERMOSTAT_ID)

    assert result.status == "assigned", result
    state = result.registration_state
    assert state.device_id == device_id
    assert state.assigned_hub == server.host, "DPS assigns the first --hostname"

    shown = server.rest.get(f"/devices/{q(device_id)}")
    assert shown.status == 200, shown
    assert shown.body["id"] == device_id
    assert shown.body["provisioned"] is True, shown
    assert shown.body["template"] == THERMOSTAT_ID, shown
    assert shown.body["enabled"] is True, shown

    # The device now connects to the hub it was assigned, with the same derived key.
    device = devices.client(device_id, hostname=state.assigned_hub)
    device.connect()
    assert device.client.connected
    twin = device.get_twin()
    assert isinstance(twin["desired"]["$version"], int), twin
    assert isinstance(twin["reported"]["$version"], int), twin


def test_dps_provisions_a_device_created_through_rest_beforehand(server, devices):
    device_id = "thermostat-rest-first"
    created = server.rest.put(f"/devices/{device_id}", {"displayName": "Made by REST"})
    assert created.status == 200, created
    assert created.body["provisioned"] is False, created

    result = devices.provision(device_id, model_id=THERMOSTAT_ID)
    assert result.status == "assigned", result

    shown = server.rest.get(f"/devices/{device_id}")
    assert shown.body["provisioned"] is True, shown
    assert shown.body["template"] == THERMOSTAT_ID, shown
    assert shown.body["displayName"] == "Made by REST", shown

    device = devices.client(device_id, hostname=result.registration_state.assigned_hub)
    device.connect()
    device.report({"maxTempSinceLastReboot": 1.5})
    assert device.get_twin()["reported"]["maxTempSinceLastReboot"] == 1.5
