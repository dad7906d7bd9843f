"""5. After a reconnect the Python SDK never subscribes again (§1.7): the server must keep the
subscriptions of a CleanSession=0 session, so desired patches and commands still arrive without
setting the handlers again."""

import time

from harness import CuttableProxy, RawMqtt, wait_for
from sdk_devices import run_command

SINCE = "2024-05-01T10:00:00Z"


def assert_patch_and_command_reach(server, device, value):
    """A desired patch and a command, both pushed by the server, reach the device."""
    sent = server.rest.patch(f"/devices/{device.device_id}/properties", {"targetTemperature": value})
    assert sent.status == 202, sent
    patch = device.next_patch()
    assert patch.get("targetTemperature") == value, patch
    assert isinstance(patch.get("$version"), int), patch

    response = run_command(server.rest, device.device_id, "getMaxMinReport", request=SINCE)
    assert response.status == 201, response
    assert response.body["responseCode"] == 200, response
    assert response.body["response"] == {"method": "getMaxMinReport", "echo": SINCE}, response
    assert device.next_method(timeout=1) == ("getMaxMinReport", SINCE)


def settle(device):
    """Waits until the SDK is connected and has done its reconnect-time twin GET (§1.7), so a
    patch that arrives afterwards was pushed on the kept subscription, not synthesized."""
    wait_for(lambda: device.client.connected, timeout=15, what="the SDK to be connected")
    device.get_twin()
    time.sleep(0.3)
    while not device.patches.empty():
        device.patches.get_nowait()


def test_subscriptions_survive_disconnect_and_connect(server, devices):
    device = devices.connected("thermostat-reconnect")
    assert_patch_and_command_reach(server, device, 50)

    device.disconnect()
    assert not device.client.connected
    device.connect()  # handlers are NOT set again
    settle(device)

    assert_patch_and_command_reach(server, device, 51)

    # And once more, to be sure the session outlives more than one reconnect.
    device.disconnect()
    device.connect()
    settle(device)
    assert_patch_and_command_reach(server, device, 52)


def test_subscriptions_survive_a_server_side_takeover(server, devices):
    device = devices.connected("thermostat-takeover")
    assert_patch_and_command_reach(server, device, 60)

    # Another connection with the same device id and CleanSession=0 takes over (§1.1: one live
    # connection per device): the SDK's connection is dropped, and the SDK reconnects at once.
    intruder = RawMqtt(server)
    ack = intruder.connect_device("thermostat-takeover", clean=False)
    assert ack.connack_code == 0, ack
    assert ack.session_present, "the device's saved session must be reported present"
    # The SDK reconnecting takes the device back, which closes the intruder's connection.
    intruder.expect_closed(timeout=15)
    settle(device)

    assert_patch_and_command_reach(server, device, 61)


def test_subscriptions_survive_a_network_cut(server, devices):
    # The SDK dials a proxy (the certificate covers its address too) that can reset the TCP
    # connection without any MQTT DISCONNECT, as a network failure would.
    proxy = CuttableProxy(server.alias, server.host)
    try:
        result = devices.provision("thermostat-cut")
        assert result.status == "assigned", result
        device = devices.client("thermostat-cut", hostname=result.registration_state.assigned_hub,
                                gateway_hostname=server.alias)
        device.connect()
        device.handle_patches()
        device.handle_methods()
        assert proxy.accepted == 1
        assert_patch_and_command_reach(server, device, 70)

        assert proxy.cut() == 1
        wait_for(lambda: proxy.accepted >= 2, timeout=15, what="the SDK to reconnect")
        settle(device)

        assert_patch_and_command_reach(server, device, 71)
    finally:
        proxy.close()


def test_clean_session_flag_decides_whether_subscriptions_are_kept(server, devices):
    result = devices.provision("raw-session")
    assert result.status == "assigned", result

    first = RawMqtt(server)
    ack = first.connect_device("raw-session", clean=False)
    assert ack.connack_code == 0 and not ack.session_present, ack
    assert first.subscribe("$iothub/twin/PATCH/properties/desired/#") == [1]
    first.disconnect()

    # CleanSession=0: the session is present and the subscription still delivers.
    second = RawMqtt(server)
    ack = second.connect_device("raw-session", clean=False)
    assert ack.connack_code == 0 and ack.session_present, ack
    assert server.rest.patch("/devices/raw-session/properties",
                             {"targetTemperature": 1}).status == 202
    patch = second.wait_for(lambda p: p.type == 3, timeout=5)
    assert patch.topic.startswith("$iothub/twin/PATCH/properties/desired/?$version="), patch
    assert patch.json()["targetTemperature"] == 1, patch
    second.disconnect()

    # CleanSession=1 drops it (MQTT 3.1.1 §3.1.2.4: session present is 0) ...
    third = RawMqtt(server)
    ack = third.connect_device("raw-session", clean=True)
    assert ack.connack_code == 0 and not ack.session_present, ack
    assert server.rest.patch("/devices/raw-session/properties",
                             {"targetTemperature": 2}).status == 202
    assert [p for p in third.drain(1.0) if p.type == 3] == [], "no subscription, no patch"
    third.disconnect()

    # ... and a later CleanSession=0 connection starts without one.
    fourth = RawMqtt(server)
    ack = fourth.connect_device("raw-session", clean=False)
    assert ack.connack_code == 0 and not ack.session_present, ack
    fourth.disconnect()
