"""Transports: MQTT over WebSockets (`websockets=True`, port 443, `/$iothub/websocket`), and an
operator's own TLS certificate instead of the development CA (`--tls-cert`, `--tls-key`)."""

import socket
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import THERMOSTAT_ID, call
from sdk_devices import run_command

SINCE = "2024-05-01T10:00:00Z"


def test_a_device_works_over_websockets(server, devices):
    result = devices.provision("thermostat-ws", model_id=THERMOSTAT_ID)
    assert result.status == "assigned", result
    device = devices.client(
        "thermostat-ws", hostname=result.registration_state.assigned_hub, websockets=True
    )
    device.connect()
    device.handle_methods()
    device.handle_patches()
    device.responder = lambda name, payload: (200, {"over": "websockets"})

    answered = run_command(server.rest, "thermostat-ws", "getMaxMinReport", request=SINCE)
    assert answered.status == 201, answered
    assert answered.body["response"] == {"over": "websockets"}, answered

    written = server.rest.patch("/devices/thermostat-ws/properties", {"targetTemperature": 61})
    assert written.status == 202, written
    patch = device.next_patch(timeout=10)
    assert patch["targetTemperature"] == 61, patch

    device.report({"maxTempSinceLastReboot": 12.5})
    props = server.rest.get("/devices/thermostat-ws/properties")
    assert props.body["maxTempSinceLastReboot"] == 12.5, props


def _certificate_for_loopback() -> tuple[Path, Path, str]:
    """A self-signed server certificate (and key) covering every 127.0.0.x, made with openssl,
    as an operator would bring their own."""
    folder = Path(tempfile.mkdtemp(prefix="flotilla-own-cert-"))
    config = folder / "openssl.cnf"
    names = "\n".join(f"IP.{i} = 127.0.0.{i}" for i in range(1, 255))
    config.write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n"
        "[dn]\nCN = flotilla-operator-cert\n"
        "[ext]\nsubjectAltName = @names\nbasicConstraints = CA:TRUE\n"
        "keyUsage = digitalSignature, keyCertSign\nextendedKeyUsage = serverAuth\n"
        f"[names]\nDNS.1 = localhost\n{names}\n"
    )
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-keyout", str(key), "-out", str(cert), "-config", str(config)],
        check=True, capture_output=True,
    )
    return cert, key, cert.read_text()


CERT, KEY, CERT_PEM = _certificate_for_loopback()


@pytest.mark.server_env(FLOTILLA_TLS_CERT=str(CERT), FLOTILLA_TLS_KEY=str(KEY))
def test_an_operators_own_certificate_is_what_devices_see(server, devices):
    # The server presents the operator's certificate, not one from its development CA.
    context = ssl.create_default_context(cadata=CERT_PEM)
    with socket.create_connection((server.host, 8883), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as tls:
            presented = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
    assert presented.strip() == CERT_PEM.strip()

    # A device that trusts only the operator's certificate provisions and connects.
    server.ca = CERT_PEM
    registration = devices.provision("thermostat-own-cert", model_id=THERMOSTAT_ID)
    assert registration.status == "assigned", registration
    device = devices.client(
        "thermostat-own-cert", hostname=registration.registration_state.assigned_hub
    )
    call(device.client.connect, timeout=15)
    twin = call(device.client.get_twin, timeout=10)
    assert "$version" in twin["desired"], twin
