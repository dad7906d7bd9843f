"""7. Security, with a raw MQTT client where the SDK would not send the bad packets: bad
credentials, disabled devices, one device reaching for another's topics, malformed packets and
silent clients are refused or cut off, and a well-behaved device on the same server keeps
working every time."""

import socket
import ssl
import threading
import time
import urllib.parse

import pytest
from azure.iot.device import IoTHubDeviceClient
from azure.iot.device.exceptions import CredentialError

from harness import (
    PUBACK,
    SUBACK,
    Closed,
    PUBLISH,
    MQTT_PORT,
    RawMqtt,
    call,
    connect_packet,
    encode_length,
    packet,
    publish_packet,
    random_key,
    sas_token,
    subscribe_packet,
    wait_for,
)
from sdk_devices import run_command

REFUSED = (4, 5)  # bad user name or password / not authorized (§1.3)
SINCE = "2024-05-01T10:00:00Z"


def create_device(server, device_id, **fields):
    made = server.rest.put(f"/devices/{device_id}",
                           {"template": "dtmi:contoso:mythermostattemplate;1", **fields})
    assert made.status == 200, made


def refused(server, attempt):
    """Runs `attempt(raw)` (which sends a CONNECT and returns the CONNACK) and asserts a refusal
    followed by the server closing the connection."""
    raw = RawMqtt(server)
    try:
        ack = attempt(raw)
        assert ack.connack_code in REFUSED, f"expected CONNACK 4 or 5, got {ack.connack_code}"
        raw.expect_closed(timeout=5)
    finally:
        raw.close()


# --------------------------------------------------------------------------------------------
# Credentials


def test_wrong_key_is_refused(server, devices, bystander):
    create_device(server, "victim")
    wrong = random_key()

    # Raw: a token signed with a key that is not the device's.
    refused(server, lambda raw: raw.connect_device("victim", key=wrong))
    # Raw: a valid token of another device (the bystander's) presented as the victim.
    stolen = sas_token(f"{server.host}/devices/bystander", server.device_key("bystander"),
                       int(time.time()) + 3600)
    refused(server, lambda raw: raw.connect(
        "victim", f"{server.host}/victim/?api-version=2021-04-12", stolen))
    # Raw: the bystander's own token for its own id, but with the client id of the victim.
    raw = RawMqtt(server)
    ack = raw.connect("victim", f"{server.host}/bystander/?api-version=2021-04-12",
                      sas_token(f"{server.host}/devices/bystander",
                                server.device_key("bystander"), int(time.time()) + 3600))
    assert ack.connack_code != 0, "a client id that is not the username's device must be refused"
    raw.expect_closed(timeout=5)
    # Raw DPS: a registration signed with a wrong key.
    refused(server, lambda raw: raw.connect_dps("victim", key=wrong))
    # No password at all.
    refused(server, lambda raw: raw.connect(
        "victim", f"{server.host}/victim/?api-version=2021-04-12", None))

    # The SDK: CONNACK 4/5 surfaces as CredentialError (§1.3), raised, not retried forever.
    device = devices.client("victim", key=wrong)
    with pytest.raises(CredentialError):
        device.connect()
    assert not device.client.connected

    # Positive control: the right key works.
    ok = RawMqtt(server)
    assert ok.connect_device("victim").connack_code == 0
    ok.disconnect()

    bystander.check()


def test_expired_sas_token_is_refused(server, bystander):
    create_device(server, "expired")
    now = int(time.time())

    refused(server, lambda raw: raw.connect_device("expired", expiry=now - 60))
    refused(server, lambda raw: raw.connect_dps("expired", expiry=now - 60))

    # Positive control: the very same construction with a future expiry is accepted.
    ok = RawMqtt(server)
    assert ok.connect_device("expired", expiry=now + 600).connack_code == 0
    ok.disconnect()
    ok = RawMqtt(server)
    assert ok.connect_dps("expired", expiry=now + 600).connack_code == 0
    ok.disconnect()

    # The SDK only takes a token that has not expired yet: give it one that expires in 2 s,
    # and connect after that.
    expiry = int(time.time()) + 2
    token = sas_token(f"{server.host}/devices/expired", server.device_key("expired"), expiry)
    client = IoTHubDeviceClient.create_from_sastoken(token, server_verification_cert=server.ca)
    try:
        while time.time() <= expiry + 1:
            time.sleep(0.2)
        with pytest.raises(CredentialError):
            call(client.connect, what="connect() with an expired token")
        assert not client.connected
    finally:
        call(client.shutdown, timeout=10)

    bystander.check()


def test_disabled_device_is_refused(server, devices, bystander):
    device = devices.connected("to-disable", patches=False, methods=False)
    device.disconnect()

    disabled = server.rest.patch("/devices/to-disable", {"enabled": False})
    assert disabled.status == 200 and disabled.body["enabled"] is False, disabled

    refused(server, lambda raw: raw.connect_device("to-disable"))
    refused(server, lambda raw: raw.connect_dps("to-disable"))
    with pytest.raises(CredentialError):
        device.connect()
    bystander.check()

    # Enabled again, it connects again (the refusal was for being disabled, nothing else).
    enabled = server.rest.patch("/devices/to-disable", {"enabled": True})
    assert enabled.status == 200, enabled
    device.connect()
    assert device.client.connected


def test_disabling_a_connected_device_closes_its_connection(server, bystander):
    create_device(server, "live-disable")
    raw = RawMqtt(server)
    assert raw.connect_device("live-disable").connack_code == 0
    raw.expect_open()

    assert server.rest.patch("/devices/live-disable", {"enabled": False}).status == 200
    raw.expect_closed(timeout=5)
    bystander.check()


# --------------------------------------------------------------------------------------------
# One device reaching for another's topics


def test_device_cannot_publish_to_another_devices_topics(server, devices, bystander):
    create_device(server, "attacker")
    victim = bystander.device
    victim.handle_messages()
    victim.send_json({"temperature": 20.0})
    wait_for(lambda: (r := server.rest.get("/devices/bystander/telemetry/temperature"))
             .status == 200 and r.body.get("value") == 20.0,
             what="the victim's own telemetry in REST")

    forbidden = [
        ("devices/bystander/messages/events/", {"temperature": 99.0}, 1),
        ("devices/bystander/messages/events/%24.ct=application%2Fjson", {"temperature": 98.0}, 0),
        ("devices/bystander/messages/devicebound/%24.to=%2Fdevices%2Fbystander%2Fmessages%2Fdevicebound",
         {"forged": "c2d"}, 1),
        ("$iothub/twin/PATCH/properties/desired/?$version=99", {"targetTemperature": 1}, 1),
        ("$iothub/methods/POST/getMaxMinReport/?$rid=1", {}, 1),
    ]
    for topic, body, qos in forbidden:
        raw = RawMqtt(server)
        assert raw.connect_device("attacker").connack_code == 0
        raw.publish(topic, body, qos=qos)
        seen = raw.expect_closed(timeout=5)
        assert not [p for p in seen if p.type == PUBACK], f"{topic}: a forbidden publish was acknowledged"

    time.sleep(0.5)
    assert victim.messages.empty(), f"the victim got a message: {victim.messages.get_nowait()}"
    telemetry = server.rest.get("/devices/bystander/telemetry/temperature")
    assert telemetry.body.get("value") == 20.0, telemetry
    attacker_telemetry = server.rest.get("/devices/attacker/telemetry/temperature")
    assert attacker_telemetry.status != 200 or attacker_telemetry.body.get("value") is None, \
        attacker_telemetry
    bystander.check()


def test_device_cannot_subscribe_to_another_devices_topics(server, bystander):
    create_device(server, "snooper")
    raw = RawMqtt(server)
    assert raw.connect_device("snooper").connack_code == 0

    # SUBACK per filter (MQTT 3.1.1 §3.9.3): 0x80 for each one refused.
    codes = raw.subscribe(
        "devices/snooper/messages/devicebound/#",
        "devices/bystander/messages/devicebound/#",
        "devices/+/messages/devicebound/#",
        "devices/bystander/messages/events/#",
        "#",
        "$iothub/#",
    )
    assert codes == [1, 0x80, 0x80, 0x80, 0x80, 0x80], codes
    # Its own twin and method topics are allowed, and must carry only its own traffic.
    assert raw.subscribe("$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#") == [1, 1]
    raw.expect_open()

    # The victim gets a desired patch and a command; the snooper must see neither.
    victim = bystander.device
    victim.handle_patches()
    assert server.rest.patch("/devices/bystander/properties",
                             {"targetTemperature": 33}).status == 202
    assert victim.next_patch().get("targetTemperature") == 33
    bystander.check()
    leaked = [p for p in raw.drain(1.0) if p.type == PUBLISH]
    assert leaked == [], f"the snooper received the victim's traffic: {[p.topic for p in leaked]}"
    raw.expect_open()


def test_device_cannot_answer_another_devices_command(server, bystander):
    create_device(server, "slow-victim")
    create_device(server, "forger")
    victim = RawMqtt(server)
    assert victim.connect_device("slow-victim").connack_code == 0
    assert victim.subscribe("$iothub/methods/POST/#") == [1]
    forger = RawMqtt(server)
    assert forger.connect_device("forger").connack_code == 0

    outcome = {}
    caller = threading.Thread(target=lambda: outcome.setdefault(
        "response", run_command(server.rest, "slow-victim", "getMaxMinReport", request=SINCE,
                                response_timeout=10)), daemon=True)
    caller.start()
    request = victim.wait_for(lambda p: p.type == PUBLISH, timeout=10)
    assert request.topic.startswith("$iothub/methods/POST/getMaxMinReport/?"), request.topic
    rid = urllib.parse.parse_qs(request.topic.split("?", 1)[1])["$rid"][0]

    # The forger answers the victim's request id first ...
    forger.publish(f"$iothub/methods/res/200/?$rid={rid}", {"forged": True}, qos=1)
    time.sleep(0.5)
    # ... then the victim answers for real.
    victim.publish(f"$iothub/methods/res/201/?$rid={rid}", {"real": True}, qos=1)
    caller.join(20)
    assert not caller.is_alive(), "the command call did not return"
    response = outcome["response"]
    assert response.status == 201, response
    assert response.body["responseCode"] == 201, f"the forged answer was taken: {response!r}"
    assert response.body["response"] == {"real": True}, response
    bystander.check()


# --------------------------------------------------------------------------------------------
# Malformed packets (one shared server; every case on a fresh connection)

DEVICE = "raw-malformed"


def _connect_bytes(server, device_id=DEVICE, **kw):
    token = sas_token(f"{server.host}/devices/{device_id}", server.device_key(device_id),
                      int(time.time()) + 3600)
    return connect_packet(device_id, f"{server.host}/{device_id}/?api-version=2021-04-12", token,
                          **kw)


def _body(pkt: bytes) -> bytes:
    """A packet without its fixed header."""
    i = 1
    while pkt[i] & 0x80:
        i += 1
    return pkt[i + 1:]


def _with_flags(connect: bytes, extra: int) -> bytes:
    body = bytearray(_body(connect))
    body[7] |= extra  # 00 04 'MQTT' level flags
    return packet(0x10, bytes(body))


AFTER_CONNECT = {
    "reserved packet type 0": lambda s: b"\x00\x00",
    "reserved packet type 15": lambda s: b"\xf0\x00",
    "remaining length longer than four bytes": lambda s: b"\x30\xff\xff\xff\xff\x01",
    "topic length beyond the packet": lambda s: b"\x30\x05\x00\x10abc",
    "topic that is not UTF-8": lambda s: publish_packet(b"\xff\xfe\xfd", b"{}", qos=0),
    "QoS 2 publish": lambda s: publish_packet(f"devices/{DEVICE}/messages/events/", b"{}", qos=2),
    "QoS 3 publish": lambda s: bytes([0x36]) + publish_packet(
        f"devices/{DEVICE}/messages/events/", b"{}", qos=1)[1:],
    "second CONNECT": lambda s: _connect_bytes(s),
    "SUBSCRIBE without filters": lambda s: packet(0x82, b"\x00\x01"),
    "SUBSCRIBE with wrong header flags": lambda s: bytes([0x80]) + subscribe_packet(
        1, [("$iothub/methods/POST/#", 1)])[1:],
    "packet over the size limit": lambda s: b"\x30" + encode_length(2 * 1024 * 1024) + b"\x00\x05topic" + b"x" * 4096,
    "server-to-client packet (CONNACK)": lambda s: b"\x20\x02\x00\x00",
}

BEFORE_CONNECT = {
    "PINGREQ before CONNECT": lambda s: b"\xc0\x00",
    # An HTTP client on the MQTT port: 'G' reads as a packet of type 4 and 'E' as 69 bytes long,
    # and the request is longer than that, so the server has a whole packet to refuse.
    "HTTP request instead of MQTT": lambda s: (
        b"GET /$iothub/websocket HTTP/1.1\r\nHost: " + s.host.encode()
        + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"),
    "CONNECT with an unknown protocol name": lambda s: _connect_bytes(s, protocol=b"MQTX"),
    "CONNECT with an unsupported protocol level": lambda s: _connect_bytes(s, level=7),
    "CONNECT with the reserved flag set": lambda s: _with_flags(_connect_bytes(s), 0x01),
    "CONNECT whose payload is cut short": lambda s: packet(0x10, _body(_connect_bytes(s))[:14]),
}


@pytest.fixture(scope="module")
def malformed_device(shared_server):
    made = shared_server.rest.put(f"/devices/{DEVICE}", {})
    assert made.status == 200, made
    return DEVICE


@pytest.mark.parametrize("case", sorted(AFTER_CONNECT))
def test_malformed_packet_after_connect_closes_the_connection(shared_server, shared_bystander,
                                                              malformed_device, case):
    raw = RawMqtt(shared_server)
    try:
        assert raw.connect_device(DEVICE).connack_code == 0
        raw.send(AFTER_CONNECT[case](shared_server))
        seen = raw.expect_closed(timeout=5)
        assert not [p for p in seen if p.type in (PUBACK, SUBACK)], f"{case}: the server answered {seen}"
    finally:
        raw.close()
    shared_bystander.check()
    # The device itself can connect again: one bad packet does not poison the server.
    again = RawMqtt(shared_server)
    assert again.connect_device(DEVICE).connack_code == 0
    again.expect_open()
    again.disconnect()


@pytest.mark.parametrize("case", sorted(BEFORE_CONNECT))
def test_malformed_packet_before_connect_closes_the_connection(shared_server, shared_bystander,
                                                               malformed_device, case):
    raw = RawMqtt(shared_server)
    try:
        raw.send(BEFORE_CONNECT[case](shared_server))
        seen = raw.expect_closed(timeout=5)
        accepted = [p for p in seen if p.type == 2 and p.connack_code == 0]
        assert not accepted, f"{case}: the server accepted the connection"
    finally:
        raw.close()
    shared_bystander.check()


# --------------------------------------------------------------------------------------------
# Silent clients


def _time_to_close(open_connection, results, name):
    started = time.monotonic()
    try:
        sock = open_connection()
        sock.settimeout(20)
        while True:
            try:
                if not sock.recv(4096):
                    break
            except (ConnectionError, ssl.SSLError, OSError):
                break
        results[name] = time.monotonic() - started
    except socket.timeout:
        results[name] = None  # still open after 20 s
    except BaseException as e:  # noqa: BLE001
        results[name] = e


def test_silent_clients_are_cut_off_after_the_connect_timeout(server, bystander):
    def tcp_only():
        return socket.create_connection((server.host, MQTT_PORT), timeout=5)

    def tls_then_nothing():
        return RawMqtt(server).sock

    def tls_then_half_a_connect():
        raw = RawMqtt(server)
        raw.send(_connect_bytes(server, "bystander")[:3])
        return raw.sock

    results = {}
    threads = [threading.Thread(target=_time_to_close, args=(f, results, f.__name__), daemon=True)
               for f in (tcp_only, tls_then_nothing, tls_then_half_a_connect)]
    for t in threads:
        t.start()
    time.sleep(1)
    bystander.check()  # while the silent clients hang on
    for t in threads:
        t.join(25)
    for name in ("tcp_only", "tls_then_nothing", "tls_then_half_a_connect"):
        elapsed = results.get(name)
        assert isinstance(elapsed, float), f"{name}: still open or failed: {elapsed!r}"
        assert 8 <= elapsed <= 14, f"{name}: cut after {elapsed:.1f} s; the CONNECT timeout is 10 s"
    bystander.check()


def test_keep_alive_is_enforced(server, bystander):
    create_device(server, "sleepy")
    create_device(server, "pinger")
    sleepy, pinger = RawMqtt(server), RawMqtt(server)
    assert sleepy.connect_device("sleepy", keep_alive=2).connack_code == 0
    assert pinger.connect_device("pinger", keep_alive=2).connack_code == 0

    started = time.monotonic()
    closed_after = None
    while time.monotonic() - started < 6:
        pinger.ping()
        if closed_after is None:
            try:
                sleepy.read(0.9)
            except TimeoutError:
                pass
            except Closed:
                closed_after = time.monotonic() - started
        else:
            time.sleep(0.9)
    assert closed_after is not None, "a client silent for 3 keep-alive periods was kept"
    assert 2.5 <= closed_after <= 5, f"cut after {closed_after:.1f} s; 1.5 x keep-alive is 3 s"
    pinger.expect_open()
    bystander.check()

