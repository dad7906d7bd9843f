"""Helpers for the end-to-end tests that drive the real Azure IoT Python device SDK against a
Flotilla server: the server process, a small REST client, device keys and SAS tokens, a raw
MQTT-over-TLS client for what the SDK will not send, a TCP proxy that can cut connections, and
timeouts around every call that can block."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
API_VERSION = "2022-07-31"
MQTT_PORT = 8883  # the Python SDK always dials 8883 (device-protocol.md §1.1)

THERMOSTAT_TEMPLATE = FIXTURES / "thermostat.template.json"
CONTROLLER_TEMPLATE = FIXTURES / "temperature-controller.template.json"
THERMOSTAT_ID = "dtmi:contoso:mythermostattemplate;1"
CONTROLLER_ID = "dtmi:contoso:temperaturecontroller;1"


# --------------------------------------------------------------------------------------------
# Timeouts


class CallTimeout(AssertionError):
    """A blocking call did not return in time (the SDK waits forever for some responses)."""


def call(fn: Callable[..., Any], *args: Any, timeout: float = 15.0, what: str | None = None,
         **kwargs: Any) -> Any:
    """Runs `fn` in a daemon thread and returns its result, re-raising its exception, or fails
    with CallTimeout when it has not returned after `timeout` seconds."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True, name=f"call:{what or fn}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallTimeout(f"{what or getattr(fn, '__name__', fn)} did not return within {timeout} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def get_nothing(q: "queue.Queue[Any]", timeout: float) -> None:
    """Asserts that nothing arrives on `q` within `timeout` seconds."""
    try:
        item = q.get(timeout=timeout)
    except queue.Empty:
        return
    raise AssertionError(f"expected nothing, got {item!r}")


# --------------------------------------------------------------------------------------------
# Keys and SAS tokens


def derive_device_key(group_key: str, device_id: str) -> str:
    """An enrollment group's derived device key (device-protocol.md §2, IoT Central group keys)."""
    digest = hmac.new(base64.b64decode(group_key), device_id.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sas_token(resource_uri: str, key: str, expiry: int, policy: str | None = None) -> str:
    """A SAS token as the Python SDK builds it: `sr` URL-encoded, signed over `sr + "\\n" + se`
    (device-protocol.md §1.3)."""
    sr = urllib.parse.quote(resource_uri, safe="")
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    ).decode()
    token = f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(signature, safe='')}&se={expiry}"
    if policy:
        token += f"&skn={policy}"
    return token


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


# --------------------------------------------------------------------------------------------
# REST


@dataclass
class Response:
    status: int
    body: Any
    text: str

    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.text[:600]}>"


class Rest:
    """A small IoT Central REST client on urllib; never raises on an HTTP status."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60.0,
                headers: dict[str, str] | None = None) -> Response:
        sep = "&" if "?" in path else "?"
        url = f"{self.base_url}{path}{sep}api-version={API_VERSION}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Response(status, parsed, text)

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("PATCH", path, body, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


def q(segment: str) -> str:
    """Percent-encodes one path segment (`;` in template ids, `*` and so on)."""
    return urllib.parse.quote(segment, safe="")


# --------------------------------------------------------------------------------------------
# The server process

_address_counter = itertools.count()


def free_loopback_address() -> str:
    """A loopback address 127.0.0.N (N in 2..254) whose port 8883 is free, spread by pid so that
    parallel runs on one machine rarely probe the same addresses."""
    base = (os.getpid() * 37) % 253
    for _ in range(253):
        n = 2 + (base + next(_address_counter)) % 253
        address = f"127.0.0.{n}"
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((address, MQTT_PORT))
        except OSError:
            continue
        finally:
            probe.close()
        return address
    raise RuntimeError("no free loopback address with port 8883")


@dataclass
class Server:
    proc: subprocess.Popen
    data_dir: Path
    host: str  # the MQTT listener's address and the hub name DPS assigns
    alias: str  # a second address the server certificate covers (for a proxy in front)
    base_url: str
    token: str
    ca: str
    id_scope: str
    group_key: str
    rest: Rest = field(repr=False)
    binary: Path | None = None
    # Extra environment for the server process (FLOTILLA_JOB_DEVICE_TIMEOUT_SECS, ...), kept for
    # a restart.
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 0

    def device_key(self, device_id: str) -> str:
        return derive_device_key(self.group_key, device_id)

    def log(self, lines: int = 60) -> str:
        try:
            text = (self.data_dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def status(self) -> str:
        code = self.proc.poll()
        if code is None:
            return f"the server (pid {self.proc.pid}) is running"
        return f"the server (pid {self.proc.pid}) has exited with {code} (a negative code is the signal that ended it)"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything (a crash)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self, timeout: float = 30) -> None:
        """Starts the server again on the same data dir and the same MQTT address (after `kill`
        or `stop`). The REST port is a new one: `base_url` and `rest` follow it."""
        assert self.proc.poll() is not None, "restart() needs the old process to be gone"
        assert self.binary is not None
        for name in ("http.addr", "mqtt.addr"):
            (self.data_dir / name).unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            proc = _launch(self.binary, self.data_dir, self.host, self.alias, self.env, append=True)
            if _wait_up(proc, self.data_dir, 15):
                break
            # The address may still be held for a moment after the kill: try again.
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"flotilla did not restart:\n{self.log(40)}")
            time.sleep(0.2)
        mqtt_addr = (self.data_dir / "mqtt.addr").read_text().strip()
        assert mqtt_addr == f"{self.host}:{MQTT_PORT}", mqtt_addr
        http_addr = (self.data_dir / "http.addr").read_text().strip()
        self.proc = proc
        self.base_url = f"http://{http_addr}/api"
        self.rest.base_url = self.base_url
        assert (self.data_dir / "admin-token").read_text().strip() == self.token
        self.restarts += 1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _launch(binary: Path, data_dir: Path, host: str, alias: str, extra_env: dict[str, str],
            append: bool = False) -> subprocess.Popen:
    log = open(data_dir / "server.log", "ab" if append else "wb")
    env = dict(os.environ)
    env.setdefault("FLOTILLA_LOG", "info,flotilla_gateway=debug")
    for var in ("FLOTILLA_DATA_DIR", "FLOTILLA_HTTP_ADDR", "FLOTILLA_MQTT_ADDR",
                "FLOTILLA_HOSTNAMES", "FLOTILLA_DATABASE_URL", "FLOTILLA_ADMIN_TOKEN",
                "FLOTILLA_TLS_CERT", "FLOTILLA_TLS_KEY", "FLOTILLA_HTTPS_ADDR"):
        env.pop(var, None)
    env.update(extra_env)
    proc = subprocess.Popen(
        [str(binary), "serve", "--data-dir", str(data_dir), "--http-addr", "127.0.0.1:0",
         "--mqtt-addr", f"{host}:{MQTT_PORT}", "--https-addr", f"{host}:443",
         "--hostname", host, "--hostname", alias],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    log.close()
    return proc


def _wait_up(proc: subprocess.Popen, data_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (data_dir / "http.addr").exists() and (data_dir / "mqtt.addr").exists():
            break
        time.sleep(0.05)
    return proc.poll() is None and (data_dir / "http.addr").exists() \
        and (data_dir / "mqtt.addr").exists()


def start_server(binary: Path, attempts: int = 3, env: dict[str, str] | None = None) -> Server:
    """Starts a server on a fresh data dir; `env` adds to (or overrides) its environment."""
    env = dict(env or {})
    last_error = ""
    for _ in range(attempts):
        host, alias = free_loopback_address(), free_loopback_address()
        data_dir = Path(tempfile.mkdtemp(prefix="flotilla-sdk-"))
        proc = _launch(binary, data_dir, host, alias, env)
        if _wait_up(proc, data_dir, 30):
            http_addr = (data_dir / "http.addr").read_text().strip()
            mqtt_addr = (data_dir / "mqtt.addr").read_text().strip()
            assert mqtt_addr == f"{host}:{MQTT_PORT}", mqtt_addr
            token = (data_dir / "admin-token").read_text().strip()
            # With an operator's own certificate there is no development CA.
            ca = (data_dir / "ca.pem").read_text() if (data_dir / "ca.pem").exists() else ""
            rest = Rest(f"http://{http_addr}/api", token)
            group = rest.get("/enrollmentGroups/sas-iot-devices")
            assert group.status == 200, group
            server = Server(
                proc=proc, data_dir=data_dir, host=host, alias=alias,
                base_url=rest.base_url, token=token, ca=ca,
                id_scope=group.body["idScope"],
                group_key=group.body["attestation"]["symmetricKey"]["primaryKey"], rest=rest,
                binary=binary, env=env,
            )
            for path, template_id in ((THERMOSTAT_TEMPLATE, THERMOSTAT_ID),
                                      (CONTROLLER_TEMPLATE, CONTROLLER_ID)):
                published = rest.put(f"/deviceTemplates/{q(template_id)}",
                                     json.loads(path.read_text()))
                assert published.status == 200, published
            return server
        # Not up: another run may have taken the address between the probe and the bind.
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        last_error = (data_dir / "server.log").read_text(errors="replace")[-3000:]
        shutil.rmtree(data_dir, ignore_errors=True)
    raise RuntimeError(f"flotilla did not start:\n{last_error}")


# --------------------------------------------------------------------------------------------
# Raw MQTT 3.1.1 over TLS, for the packets the SDK never sends

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def mqtt_string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_length(len(body)) + body


def connect_packet(client_id: str, username: str | None, password: str | None,
                   clean: bool = False, keep_alive: int = 60,
                   protocol: bytes = b"MQTT", level: int = 4) -> bytes:
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean else 0
    body = mqtt_string(protocol) + bytes([level, flags]) + struct.pack("!H", keep_alive)
    body += mqtt_string(client_id)
    if username is not None:
        body += mqtt_string(username)
    if password is not None:
        body += mqtt_string(password)
    return packet(0x10, body)


def subscribe_packet(pkid: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", pkid) + b"".join(mqtt_string(t) + bytes([qos]) for t, qos in filters)
    return packet(0x82, body)


def publish_packet(topic: str | bytes, payload: bytes, qos: int = 0, pkid: int = 1) -> bytes:
    body = mqtt_string(topic) + (struct.pack("!H", pkid) if qos else b"") + payload
    return packet(0x30 | (qos << 1), body)


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def connack_code(self) -> int:
        assert self.type == CONNACK, self
        return self.body[1]

    @property
    def session_present(self) -> bool:
        assert self.type == CONNACK, self
        return bool(self.body[0] & 1)

    @property
    def suback_codes(self) -> list[int]:
        assert self.type == SUBACK, self
        return list(self.body[2:])

    @property
    def topic(self) -> str:
        assert self.type == PUBLISH, self
        (n,) = struct.unpack("!H", self.body[:2])
        return self.body[2:2 + n].decode()

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def pkid(self) -> int | None:
        if self.type == PUBLISH:
            if not self.qos:
                return None
            (n,) = struct.unpack("!H", self.body[:2])
            return struct.unpack("!H", self.body[2 + n:4 + n])[0]
        return struct.unpack("!H", self.body[:2])[0]

    @property
    def payload(self) -> bytes:
        assert self.type == PUBLISH, self
        (n,) = struct.unpack("!H", self.body[:2])
        return self.body[2 + n + (2 if self.qos else 0):]

    def json(self) -> Any:
        return json.loads(self.payload or b"null")


class Closed(Exception):
    """The server closed the connection."""


class RawMqtt:
    """A minimal MQTT 3.1.1 client over TLS on a blocking socket, byte for byte under the test's
    control. Every read has a timeout."""

    def __init__(self, server: Server, tls: bool = True, host: str | None = None) -> None:
        self.server = server
        self.host = host or server.host
        try:
            raw = socket.create_connection((self.host, MQTT_PORT), timeout=10)
        except ConnectionRefusedError:
            raise AssertionError(
                f"nothing listens on {self.host}:{MQTT_PORT}; {server.status()}\n{server.log(20)}"
            ) from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cadata=server.ca)
            self.sock = ctx.wrap_socket(raw, server_hostname=self.host)
        else:
            self.sock = raw
        self.buffer = b""
        self.received: list[Packet] = []
        self.next_pkid = 1

    # -- sending

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str, username: str | None, password: str | None,
                clean: bool = False, keep_alive: int = 60, timeout: float = 10) -> Packet:
        self.send(connect_packet(client_id, username, password, clean, keep_alive))
        ack = self.read(timeout)
        assert ack.type == CONNACK, ack
        return ack

    def connect_device(self, device_id: str, key: str | None = None, clean: bool = False,
                       keep_alive: int = 60, expiry: int | None = None,
                       hostname: str | None = None) -> Packet:
        hostname = hostname or self.server.host
        key = key or self.server.device_key(device_id)
        expiry = expiry if expiry is not None else int(time.time()) + 3600
        token = sas_token(f"{hostname}/devices/{device_id}", key, expiry)
        username = f"{hostname}/{device_id}/?api-version=2021-04-12"
        return self.connect(device_id, username, token, clean, keep_alive)

    def connect_dps(self, registration_id: str, key: str | None = None,
                    expiry: int | None = None) -> Packet:
        key = key or self.server.device_key(registration_id)
        expiry = expiry if expiry is not None else int(time.time()) + 3600
        resource = f"{self.server.id_scope}/registrations/{registration_id}"
        token = sas_token(resource, key, expiry, policy="registration")
        username = f"{resource}/api-version=2019-03-31"
        return self.connect(registration_id, username, token)

    def subscribe(self, *filters: str, qos: int = 1, timeout: float = 10) -> list[int]:
        pkid = self._pkid()
        self.send(subscribe_packet(pkid, [(f, qos) for f in filters]))
        ack = self.wait_for(lambda p: p.type == SUBACK, timeout)
        assert ack.pkid == pkid, ack
        return ack.suback_codes

    def publish(self, topic: str, payload: bytes | str | Any, qos: int = 0) -> int:
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        if isinstance(payload, str):
            payload = payload.encode()
        pkid = self._pkid()
        self.send(publish_packet(topic, payload, qos, pkid))
        return pkid

    def ping(self, timeout: float = 5) -> None:
        self.send(b"\xc0\x00")
        self.wait_for(lambda p: p.type == PINGRESP, timeout)

    def disconnect(self) -> None:
        try:
            self.send(b"\xe0\x00")
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _pkid(self) -> int:
        pkid = self.next_pkid
        self.next_pkid = pkid % 65535 + 1
        return pkid

    # -- receiving

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise TimeoutError from None
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise Closed(repr(e)) from None
        if not chunk:
            raise Closed("EOF")
        self.buffer += chunk

    def read(self, timeout: float = 10) -> Packet:
        """The next packet; TimeoutError when none arrives in time, Closed at the end."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 2:
                length, multiplier, i = 0, 1, 1
                complete_header = False
                while i < len(self.buffer) and i <= 4:
                    byte = self.buffer[i]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    i += 1
                    if not byte & 0x80:
                        complete_header = True
                        break
                if complete_header and len(self.buffer) >= i + length:
                    first = self.buffer[0]
                    body = self.buffer[i:i + length]
                    self.buffer = self.buffer[i + length:]
                    p = Packet(first >> 4, first & 0x0F, body)
                    self.received.append(p)
                    if p.type == PUBLISH and p.qos == 1:
                        # Acknowledge at once, as a device would.
                        try:
                            self.send(b"\x40\x02" + struct.pack("!H", p.pkid))
                        except OSError:
                            pass
                    return p
            self._fill(deadline)

    def wait_for(self, predicate: Callable[[Packet], bool], timeout: float = 10) -> Packet:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching packet in time")
            p = self.read(remaining)
            if predicate(p):
                return p

    def expect_closed(self, timeout: float) -> list[Packet]:
        """Reads until the server closes the connection; fails if it is still open after
        `timeout` seconds. Returns the packets read meanwhile."""
        got: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                got.append(self.read(remaining))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(
                    f"the server kept the connection open for {timeout} s; packets: {got}"
                ) from None

    def expect_open(self, quiet: float = 0.5) -> list[Packet]:
        """Asserts the connection is still open (answers a PINGREQ) and returns what arrived."""
        got: list[Packet] = []
        try:
            self.send(b"\xc0\x00")
            deadline = time.monotonic() + 5
            while True:
                p = self.read(max(0.01, deadline - time.monotonic()))
                if p.type == PINGRESP:
                    break
                got.append(p)
        except (Closed, OSError) as e:
            raise AssertionError(f"the connection was closed: {e!r}") from None
        except TimeoutError:
            raise AssertionError("no PINGRESP within 5 s") from None
        return got

    def drain(self, seconds: float) -> list[Packet]:
        """Everything that arrives within `seconds` (the connection may close meanwhile)."""
        got: list[Packet] = []
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return got
            try:
                got.append(self.read(remaining))
            except (TimeoutError, Closed):
                return got


# --------------------------------------------------------------------------------------------
# A TCP proxy that can cut every connection through it, to stand in for a network failure


class CuttableProxy:
    def __init__(self, listen_host: str, target_host: str, port: int = MQTT_PORT) -> None:
        self.target = (target_host, port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((listen_host, port))
        self.listener.listen(16)
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _accept_loop(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Resets every connection through the proxy (RST both ways, no MQTT DISCONNECT)."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    # Linger 0: the close resets the connection. The shutdown wakes the pump
                    # thread blocked in recv (a bare close would not, and so would not reset).
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        return len(pairs)

    def close(self) -> None:
        self.stopped = True
        try:
            self.listener.close()
        except OSError:
            pass
        self.cut()
