"""The job engine end to end, with real SDK devices that acknowledge writable properties per
Plug and Play and answer commands: IoT Central's jobs article verbatim, component properties a
device refuses, command jobs and their answers, offline devices and reruns, stop and resume in
the middle of a batch, a SIGKILL of the server in the middle of a job, and the order of two jobs
on the same devices.

Each test's server runs with FLOTILLA_JOB_DEVICE_TIMEOUT_SECS=5 (the crash tests: 30, so the
restart does not eat a device's deadline)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
from azure.iot.device import MethodResponse

from harness import CONTROLLER_ID, THERMOSTAT_ID, call, q, wait_for

DEVICE_TIMEOUT = 5
pytestmark = pytest.mark.server_env(FLOTILLA_JOB_DEVICE_TIMEOUT_SECS=DEVICE_TIMEOUT)

MISSING = object()


# --------------------------------------------------------------------------------------------
# Devices that take part in jobs


class JobDevice:
    """A real SDK device whose handlers acknowledge one writable property per Plug and Play
    (after `ack_delay` seconds, with `ack_code`) and answer commands (after `method_delay`
    seconds, with `method_status`), recording every call with its time."""

    def __init__(self, device: Any, prop: str = "targetTemperature", component: str | None = None,
                 ack_code: int = 200, ack_description: str = "completed", ack_delay: float = 0.0,
                 kept_value: Any = 18.0, method_status: int = 200,
                 method_payload: Callable[[str, Any], Any] | None = None,
                 method_delay: float = 0.0) -> None:
        self.device = device
        self.id = device.device_id
        self.prop = prop
        self.component = component
        self.ack_code = ack_code
        self.ack_description = ack_description
        self.ack_delay = ack_delay
        self.kept_value = kept_value  # what a refusing device keeps and reports back
        self.method_status = method_status
        self.method_payload = method_payload or (
            lambda name, payload: {"maxTemp": 30.5, "minTemp": 10.25, "device": self.id})
        self.method_delay = method_delay
        self.lock = threading.Lock()
        self.patches: list[tuple[float, dict]] = []  # every desired-patch handler call
        self.acks: list[tuple[float, int, Any, int]] = []  # (time, av, value, ac) once reported
        self.invocations: list[tuple[float, str, Any]] = []  # every method handler call
        self.answered: list[tuple[float, int]] = []  # method responses that went out
        self.errors: list[BaseException] = []
        call(setattr, device.client, "on_twin_desired_properties_patch_received", self._on_patch,
             what=f"{self.id}: setting the desired-patch handler")
        call(setattr, device.client, "on_method_request_received", self._on_method,
             what=f"{self.id}: setting the method handler")

    # handlers -----------------------------------------------------------------------------

    def _value_in(self, patch: dict) -> Any:
        holder = patch.get(self.component, {}) if self.component else patch
        if not isinstance(holder, dict):
            return MISSING
        return holder.get(self.prop, MISSING)

    def _on_patch(self, patch: dict) -> None:
        with self.lock:
            self.patches.append((time.monotonic(), patch))
        value = self._value_in(patch)
        if value is MISSING:
            # The SDK's own patch after a reconnect when the twin's $version moved, without
            # this property: nothing to acknowledge.
            return
        version = patch["$version"]
        time.sleep(self.ack_delay)
        accepted = self.ack_code < 400
        ack = {"value": value if accepted else self.kept_value, "ac": self.ack_code,
               "av": version, "ad": self.ack_description}
        body = {self.component: {"__t": "c", self.prop: ack}} if self.component else {self.prop: ack}
        if self._retry(lambda: call(self.device.client.patch_twin_reported_properties, body,
                                    timeout=10, what=f"{self.id}: reporting the ack")):
            with self.lock:
                self.acks.append((time.monotonic(), version, value, self.ack_code))

    def _on_method(self, request: Any) -> None:
        with self.lock:
            self.invocations.append((time.monotonic(), request.name, request.payload))
        time.sleep(self.method_delay)
        response = MethodResponse.create_from_method_request(
            request, self.method_status, self.method_payload(request.name, request.payload))
        if self._retry(lambda: call(self.device.client.send_method_response, response,
                                    timeout=10, what=f"{self.id}: answering the method")):
            with self.lock:
                self.answered.append((time.monotonic(), self.method_status))

    def _retry(self, fn: Callable[[], Any], within: float = 45) -> bool:
        """Retries a device-side send while the connection is down (the crash tests)."""
        deadline = time.monotonic() + within
        while True:
            try:
                fn()
                return True
            except BaseException as e:  # noqa: BLE001 - recorded, and shown by the test
                with self.lock:
                    self.errors.append(e)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.5)

    # what was seen --------------------------------------------------------------------------

    def property_patches(self) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, p) for t, p in self.patches if self._value_in(p) is not MISSING]

    def values(self) -> list[Any]:
        return [self._value_in(p) for _, p in self.property_patches()]

    def ack_list(self) -> list[tuple[float, int, Any, int]]:
        with self.lock:
            return list(self.acks)

    def invocation_list(self) -> list[tuple[float, str, Any]]:
        with self.lock:
            return list(self.invocations)

    def __repr__(self) -> str:
        with self.lock:
            return (f"<{self.id}: patches={[p for _, p in self.patches]} "
                    f"acks={[(v, x, c) for _, v, x, c in self.acks]} "
                    f"invocations={[(n, p) for _, n, p in self.invocations]} "
                    f"answered={[s for _, s in self.answered]} errors={self.errors[-3:]}>")


def fleet(devices: Any, ids: list[str], model_id: str, client_kwargs: dict | None = None,
          **behaviour: Any) -> list[JobDevice]:
    """Provisions each id through DPS with `model_id`, connects it, and sets job handlers."""
    out = []
    for device_id in ids:
        device = devices.connected(device_id, model_id=model_id, patches=False, methods=False,
                                   **(client_kwargs or {}))
        out.append(JobDevice(device, **behaviour))
    return out


# --------------------------------------------------------------------------------------------
# REST


def put_group(server: Any, group_id: str, filter_text: str) -> dict:
    response = server.rest.put(f"/deviceGroups/{q(group_id)}",
                               {"displayName": group_id, "filter": filter_text})
    assert response.status == 200, response
    return response.body


def create_job(server: Any, job_id: str, body: dict) -> dict:
    response = server.rest.put(f"/jobs/{q(job_id)}", body)
    assert response.status == 200, f"PUT /jobs/{job_id} {body} -> {response!r}"
    assert response.body["status"] == "pending", response
    assert response.body["id"] == job_id, response
    return response.body


def get_job(server: Any, job_id: str) -> dict:
    response = server.rest.get(f"/jobs/{q(job_id)}")
    assert response.status == 200, response
    return response.body


def job_devices(server: Any, job_id: str) -> list[dict]:
    response = server.rest.get(f"/jobs/{q(job_id)}/devices")
    assert response.status == 200, response
    assert "nextLink" not in response.body, f"a few devices fit one page: {response!r}"
    return response.body["value"]


def statuses_of(server: Any, job_id: str) -> dict[str, str]:
    return {d["id"]: d["status"] for d in job_devices(server, job_id)}


def wait_job(server: Any, job_id: str, wanted: set[str], timeout: float,
             seen: list[str] | None = None, interval: float = 0.05) -> dict:
    """Polls the job until its status is one of `wanted`; appends each status change to
    `seen`."""
    seen = seen if seen is not None else []
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(server, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in wanted:
            return job
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"job {job_id} not {wanted} after {timeout} s; statuses seen {seen}; last {job}; "
                f"devices {job_devices(server, job_id)}")
        time.sleep(interval)


def progress(total: int, pending: int, completed: int, failed: int) -> dict:
    return {"total": total, "pending": pending, "completed": completed, "failed": failed}


def desired_version(server: Any, device_id: str, name: str, component: str | None = None) -> int:
    path = f"/devices/{q(device_id)}"
    if component:
        path += f"/components/{q(component)}"
    response = server.rest.get(path + "/properties")
    assert response.status == 200, response
    version = response.body.get("$metadata", {}).get(name, {}).get("desiredVersion")
    assert isinstance(version, int), response
    return version


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# 1. The article, verbatim

# A template whose id is the article's group filter's $template, and whose capability model's
# @id is the article's job target, so both of the article's references resolve.
ARTICLE_TEMPLATE_ID = "dtmi:modelDefinition:dtdlv2"
ARTICLE_MODEL_ID = "dtmi:modelDefinition:zomtmdxh:eqod32zbyl"
ARTICLE_TEMPLATE = {
    "@id": ARTICLE_TEMPLATE_ID,
    "@type": ["ModelDefinition", "DeviceModel"],
    "@context": ["dtmi:iotcentral:context;2", "dtmi:dtdl:context;2"],
    "displayName": "Thermostat (jobs article)",
    "capabilityModel": {
        "@id": ARTICLE_MODEL_ID,
        "@type": "Interface",
        "displayName": "Thermostat",
        "contents": [
            {"@type": ["Property", "Temperature"], "name": "targetTemperature",
             "displayName": "Target Temperature", "schema": "double", "unit": "degreeCelsius",
             "writable": True},
            {"@type": "Command", "name": "getMaxMinReport",
             "request": {"name": "since", "schema": "dateTime"}},
        ],
    },
}

# "PUT https://{your app subdomain}/api/deviceGroups/group1?api-version=2022-07-31"
ARTICLE_GROUP_BODY = {
    "displayName": "Device group 1",
    "description": "Custom device group.",
    "filter": "SELECT * FROM devices WHERE $template = \"dtmi:modelDefinition:dtdlv2\" AND $provisioned = true",
}
ARTICLE_GROUP_RESPONSE = {"id": "group1", **ARTICLE_GROUP_BODY}

# "PUT https://{your app subdomain}.azureiotcentral.com/api/jobs/job-006?api-version=2022-07-31"
ARTICLE_JOB_BODY = {
    "displayName": "Set target temperature",
    "description": "Set target temperature device property",
    "group": "group1",
    "batch": {
        "type": "percentage",
        "value": 25,
    },
    "cancellationThreshold": {
        "type": "percentage",
        "value": 10,
        "batch": False,
    },
    "data": [
        {
            "type": "PropertyJobData",
            "target": "dtmi:modelDefinition:zomtmdxh:eqod32zbyl",
            "path": "targetTemperature",
            "value": "55",
        }
    ],
}
ARTICLE_JOB_RESPONSE = {"id": "job-006", **ARTICLE_JOB_BODY, "status": "pending"}


def assert_article_job(body: dict, status: str) -> None:
    """The article's job as the server shows it: every field of the article's response (the data
    type echoed as sent, "PropertyJobData", as the article's example shows)."""
    for key, value in ARTICLE_JOB_RESPONSE.items():
        if key == "status":
            assert body["status"] == status, body
        else:
            assert body.get(key) == value, f"{key}: {body}"


def test_the_jobs_article_verbatim(server, devices):
    published = server.rest.put(f"/deviceTemplates/{q(ARTICLE_TEMPLATE_ID)}", ARTICLE_TEMPLATE)
    assert published.status == 200, published

    # Four devices (the article's therm-01..04) register through DPS with the template's id as
    # their model id, connect, and acknowledge what they are sent (after 0.5 s, so the job is
    # observably running).
    ids = ["therm-01", "therm-02", "therm-03", "therm-04"]
    therms = fleet(devices, ids, ARTICLE_TEMPLATE_ID, ack_delay=0.5)
    for device_id in ids:
        device = server.rest.get(f"/devices/{device_id}")
        assert device.status == 200, device
        assert device.body["template"] == ARTICLE_TEMPLATE_ID, device
        assert device.body["provisioned"] is True, device
    # Outside the group: a device of the template that never provisioned, and a thermostat of
    # another template.
    unprovisioned = server.rest.put("/devices/therm-99",
                                    {"displayName": "therm-99", "template": ARTICLE_TEMPLATE_ID})
    assert unprovisioned.status == 200, unprovisioned
    assert unprovisioned.body["provisioned"] is False, unprovisioned
    other = fleet(devices, ["other-thermostat"], THERMOSTAT_ID)[0]

    group = server.rest.put("/deviceGroups/group1", ARTICLE_GROUP_BODY)
    assert group.status == 200, group
    for key, value in ARTICLE_GROUP_RESPONSE.items():
        assert group.body.get(key) == value, f"{key}: {group!r}"

    created = server.rest.put("/jobs/job-006", ARTICLE_JOB_BODY)
    assert created.status == 200, created
    assert_article_job(created.body, "pending")

    seen: list[str] = ["pending"]
    running = wait_job(server, "job-006", {"running"}, timeout=10, seen=seen)
    # 25% of the 4 devices: batches of one, in id order.
    assert running["progress"]["total"] == 4, running
    assert_article_job(running, "running")

    # Stop while the first batch is in flight (therm-01 has its patch, not yet acknowledged)...
    wait_for(lambda: therms[0].property_patches(), timeout=10, what="therm-01's patch")
    stopped = server.rest.post("/jobs/job-006/stop", None)
    assert stopped.status == 204, stopped
    stopped_at = time.monotonic()
    assert get_job(server, "job-006")["status"] == "stopped"
    again = server.rest.post("/jobs/job-006/stop", None)
    assert again.status == 409 and again.error_code() == "Conflict", again
    # ... the device in flight finishes, no other starts.
    wait_for(lambda: statuses_of(server, "job-006")["therm-01"] == "completed", timeout=10,
             what="therm-01 to complete while the job is stopped")
    time.sleep(1.0)
    assert [t.property_patches() for t in therms[1:]] == [[], [], []], therms
    job = get_job(server, "job-006")
    assert job["status"] == "stopped", job
    assert job["progress"] == progress(4, 3, 1, 0), job

    resumed = server.rest.post("/jobs/job-006/resume", None)
    assert resumed.status == 204, resumed
    resumed_at = time.monotonic()
    seen.append("stopped")
    done = wait_job(server, "job-006", {"complete", "failed", "cancelled"}, timeout=20, seen=seen)
    assert done["status"] == "complete", (done, job_devices(server, "job-006"))
    assert seen[0] == "pending" and seen[-1] == "complete", seen
    assert "running" in seen[:seen.index("stopped")], f"never observed running: {seen}"
    assert set(seen) <= {"pending", "running", "stopped", "complete"}, seen

    # GET /api/jobs: listed.
    listed = server.rest.get("/jobs")
    assert listed.status == 200, listed
    mine = [j for j in listed.body["value"] if j["id"] == "job-006"]
    assert len(mine) == 1, listed
    assert_article_job(mine[0], "complete")
    # GET /api/jobs/job-006
    job = get_job(server, "job-006")
    assert_article_job(job, "complete")
    assert job["progress"] == progress(4, 0, 4, 0), job
    assert mine[0] == job, (mine[0], job)
    # GET /api/jobs/job-006/devices: every device completed, in the job's (id) order.
    assert job_devices(server, "job-006") == [{"id": i, "status": "completed"} for i in ids]

    # Each device got targetTemperature 55 as a number ("55" in the job), exactly once.
    acks = []
    for therm in therms:
        patches = therm.property_patches()
        assert len(patches) == 1, therm
        patch = patches[0][1]
        assert set(patch) == {"targetTemperature", "$version"}, patch
        assert is_number(patch["targetTemperature"]) and patch["targetTemperature"] == 55, patch
        acks.append(therm.ack_list())
        assert [(v, x, c) for _, v, x, c in acks[-1]] == [(patch["$version"], 55, 200)], therm
        props = server.rest.get(f"/devices/{therm.id}/properties")
        assert props.body["targetTemperature"] == 55, props
        assert props.body["$metadata"]["targetTemperature"]["ackCode"] == 200, props
    # Batches one after the other: each device's patch came after the previous one's ack, and
    # nothing started between the stop and the resume.
    for prev, (therm, prev_acks) in zip(therms, zip(therms[1:], acks)):
        assert therm.property_patches()[0][0] > prev_acks[0][0], (prev, therm)
    assert therms[1].property_patches()[0][0] > resumed_at > stopped_at
    assert other.patches == [] and other.invocations == [], other

    # The article's stop, resume and rerun requests on the finished job: nothing to stop or
    # resume, and no failed device to rerun.
    for path in ("/jobs/job-006/stop", "/jobs/job-006/resume"):
        response = server.rest.post(path, None)
        assert response.status == 409 and response.error_code() == "Conflict", (path, response)
    rerun = server.rest.request("PUT", "/jobs/job-006/rerun/rerun-001")
    assert rerun.status == 409 and rerun.error_code() == "Conflict", rerun
    assert server.rest.get("/jobs/rerun-001").status == 404
    assert get_job(server, "job-006") == job


# --------------------------------------------------------------------------------------------
# 2. A component's property, one device refuses


def test_component_property_job_with_one_refusal(server, devices):
    ids = ["ctl-1", "ctl-2", "ctl-3", "ctl-4"]
    controllers = []
    for device_id in ids:
        refuses = device_id == "ctl-3"
        controllers += fleet(devices, [device_id], CONTROLLER_ID, component="thermostat1",
                             ack_code=400 if refuses else 200,
                             ack_description="out of range" if refuses else "completed")
    # In the group (it holds every device) but of another template: not in the job.
    thermostat = fleet(devices, ["plain-thermostat"], THERMOSTAT_ID)[0]
    put_group(server, "everything", "SELECT * FROM devices")

    create_job(server, "component-job", {
        "displayName": "thermostat1 target",
        "group": "everything",
        "data": [{"type": "property", "target": CONTROLLER_ID,
                  "path": "thermostat1.targetTemperature", "value": 21.5}],
    })
    job = wait_job(server, "component-job", {"complete", "failed", "cancelled"}, timeout=15)
    assert job["status"] == "complete", job
    assert job["progress"] == progress(4, 0, 3, 1), job

    listed = job_devices(server, "component-job")
    assert [d["id"] for d in listed] == ids, listed
    for entry in listed:
        if entry["id"] == "ctl-3":
            assert entry["status"] == "failed", entry
            assert entry["reason"] == (
                "the device refused 'thermostat1.targetTemperature' with ac 400: out of range"
            ), entry
            assert "responseCode" not in entry and "response" not in entry, entry
        else:
            assert entry == {"id": entry["id"], "status": "completed"}, entry

    for controller in controllers:
        patches = controller.property_patches()
        assert len(patches) == 1, controller
        patch = patches[0][1]
        assert patch == {"thermostat1": {"__t": "c", "targetTemperature": 21.5},
                         "$version": patch["$version"]}, patch
        assert desired_version(server, controller.id, "targetTemperature",
                               "thermostat1") == patch["$version"]
    assert thermostat.patches == [], thermostat


# --------------------------------------------------------------------------------------------
# 3. Commands: answers and failures


@pytest.mark.parametrize("template,path,method", [
    (THERMOSTAT_ID, "getMaxMinReport", "getMaxMinReport"),
    (CONTROLLER_ID, "thermostat1.getMaxMinReport", "thermostat1*getMaxMinReport"),
], ids=["root", "component"])
def test_command_job_answers_and_failure(server, devices, template, path, method):
    since = "2021-06-15T05:00:00.000Z"
    ids = ["cmd-1", "cmd-2", "cmd-3", "cmd-4"]
    fleet_ = []
    for device_id in ids:
        fails = device_id == "cmd-2"
        fleet_ += fleet(
            devices, [device_id], template,
            method_status=500 if fails else 200,
            method_payload=(lambda name, payload, i=device_id, f=fails:
                            {"error": "sensor fault", "device": i} if f
                            else {"maxTemp": 30.5, "minTemp": 10.25, "device": i, "since": payload}),
        )
    put_group(server, "cmds", f'SELECT * FROM devices WHERE $template = "{template}"')

    create_job(server, "command-job", {
        "displayName": "Run device report",
        "group": "cmds",
        "batch": {"type": "number", "value": 2},
        # One failure does not reach 2: the job runs to its end.
        "cancellationThreshold": {"type": "number", "value": 2, "batch": False},
        "data": [{"type": "CommandJobData", "target": template, "path": path, "value": since}],
    })
    job = wait_job(server, "command-job", {"complete", "failed", "cancelled"}, timeout=20)
    assert job["status"] == "complete", job
    assert job["progress"] == progress(4, 0, 3, 1), job

    expected = []
    for device_id in ids:
        if device_id == "cmd-2":
            expected.append({"id": device_id, "status": "failed",
                             "reason": f"the device answered '{method}' with status 500",
                             "responseCode": 500,
                             "response": {"error": "sensor fault", "device": device_id}})
        else:
            expected.append({"id": device_id, "status": "completed", "responseCode": 200,
                             "response": {"maxTemp": 30.5, "minTemp": 10.25,
                                          "device": device_id, "since": since}})
    assert job_devices(server, "command-job") == expected

    for device in fleet_:
        assert [(n, p) for _, n, p in device.invocation_list()] == [(method, since)], device
        assert device.patches == [], device


# --------------------------------------------------------------------------------------------
# 4. An offline device fails at its deadline; a rerun after it connects covers only it


def test_offline_device_fails_at_its_deadline_and_rerun_completes_it(server, devices):
    ids = ["off-1", "off-2", "off-3", "off-4"]
    online = fleet(devices, ["off-1", "off-2", "off-4"], THERMOSTAT_ID)
    registered = devices.provision("off-3")  # registered, never connected
    assert registered.status == "assigned", registered
    put_group(server, "offline-group", f'SELECT * FROM devices WHERE $template = "{THERMOSTAT_ID}"')

    started = time.monotonic()
    create_job(server, "offline-job", {
        "group": "offline-group",
        "data": [{"type": "property", "target": THERMOSTAT_ID, "path": "targetTemperature",
                  "value": 61}],
    })
    # The connected devices finish at once; the job waits for the offline one.
    job = wait_for(lambda: (lambda j: j if j["progress"]["completed"] == 3 else None)(
        get_job(server, "offline-job")), timeout=DEVICE_TIMEOUT - 1,
        what="the three connected devices to complete")
    assert job["status"] == "running", job
    assert job["progress"] == progress(4, 1, 3, 0), job
    assert statuses_of(server, "offline-job")["off-3"] == "running"
    early = server.rest.request("PUT", "/jobs/offline-job/rerun/too-early")
    assert early.status == 409 and early.error_code() == "Conflict", early

    job = wait_job(server, "offline-job", {"complete", "failed", "cancelled"},
                   timeout=DEVICE_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    assert elapsed >= DEVICE_TIMEOUT - 0.2, f"failed before its deadline: {elapsed:.2f} s"
    assert job["status"] == "complete", job
    assert job["progress"] == progress(4, 0, 3, 1), job
    version = desired_version(server, "off-3", "targetTemperature")
    assert job_devices(server, "offline-job") == [
        {"id": "off-1", "status": "completed"},
        {"id": "off-2", "status": "completed"},
        {"id": "off-3", "status": "failed",
         "reason": f"no acknowledgement of desired version {version} within {DEVICE_TIMEOUT} s: "
                   "the device was offline"},
        {"id": "off-4", "status": "completed"},
    ]

    # It connects (handlers set after the connection: the SDK asks for no twin, so the only
    # patch it can get is the one the rerun pushes).
    late_client = devices.client("off-3", hostname=registered.registration_state.assigned_hub)
    late_client.connect()
    late = JobDevice(late_client)

    rerun = server.rest.request("PUT", "/jobs/offline-job/rerun/offline-rerun")
    assert rerun.status == 200, rerun
    assert rerun.body["id"] == "offline-rerun" and rerun.body["status"] == "pending", rerun
    assert rerun.body["data"] == get_job(server, "offline-job")["data"], rerun
    assert rerun.body["group"] == "offline-group", rerun
    job = wait_job(server, "offline-rerun", {"complete", "failed", "cancelled"}, timeout=15)
    assert job["status"] == "complete", (job, late)
    assert job["progress"] == progress(1, 0, 1, 0), job
    assert job_devices(server, "offline-rerun") == [{"id": "off-3", "status": "completed"}]

    patches = late.property_patches()
    assert len(patches) == 1, late
    assert patches[0][1]["targetTemperature"] == 61, late
    assert patches[0][1]["$version"] > version, late
    for device in online:
        assert device.values() == [61], device
    # The original is unchanged; the rerun has nothing to rerun; an id cannot be reused.
    original = get_job(server, "offline-job")
    assert original["progress"] == progress(4, 0, 3, 1), original
    assert statuses_of(server, "offline-job")["off-3"] == "failed"
    nothing = server.rest.request("PUT", "/jobs/offline-rerun/rerun/offline-rerun-2")
    assert nothing.status == 409 and nothing.error_code() == "Conflict", nothing
    taken = server.rest.request("PUT", "/jobs/offline-job/rerun/offline-rerun")
    assert taken.status == 409 and taken.error_code() == "Conflict", taken
    listed = [j["id"] for j in server.rest.get("/jobs").body["value"]]
    assert listed == ["offline-rerun", "offline-job"], f"newest first: {listed}"


# --------------------------------------------------------------------------------------------
# 5. Stop in the middle of a batch, resume


def test_stop_in_the_middle_of_a_batch_and_resume(server, devices):
    ids = ["stop-1", "stop-2", "stop-3", "stop-4"]
    slow = fleet(devices, ids, THERMOSTAT_ID, ack_delay=1.5)
    put_group(server, "stop-group", f'SELECT * FROM devices WHERE $template = "{THERMOSTAT_ID}"')
    create_job(server, "stop-job", {
        "group": "stop-group",
        "batch": {"type": "number", "value": 1},
        "data": [{"type": "property", "target": THERMOSTAT_ID, "path": "targetTemperature",
                  "value": 66}],
    })

    wait_for(lambda: slow[0].property_patches(), timeout=10, what="stop-1's patch")
    stop = server.rest.post("/jobs/stop-job/stop", None)
    assert stop.status == 204, stop
    stopped_at = time.monotonic()
    assert slow[0].ack_list() == [], "stop-1 must still be in flight when the job stops"
    job = get_job(server, "stop-job")
    assert job["status"] == "stopped", job
    assert statuses_of(server, "stop-job") == {
        "stop-1": "running", "stop-2": "pending", "stop-3": "pending", "stop-4": "pending"}

    # The device in flight finishes; none starts while the job is stopped.
    wait_for(lambda: slow[0].ack_list(), timeout=10, what="stop-1's ack")
    wait_for(lambda: statuses_of(server, "stop-job")["stop-1"] == "completed", timeout=5,
             what="stop-1 to complete")
    time.sleep(2.0)
    assert [d.patches for d in slow[1:]] == [[], [], []], slow
    job = get_job(server, "stop-job")
    assert job["status"] == "stopped", job
    assert job["progress"] == progress(4, 3, 1, 0), job
    assert statuses_of(server, "stop-job") == {
        "stop-1": "completed", "stop-2": "pending", "stop-3": "pending", "stop-4": "pending"}
    twice = server.rest.post("/jobs/stop-job/stop", None)
    assert twice.status == 409, twice

    resume = server.rest.post("/jobs/stop-job/resume", None)
    assert resume.status == 204, resume
    resumed_at = time.monotonic()
    again = server.rest.post("/jobs/stop-job/resume", None)
    assert again.status == 409 and again.error_code() == "Conflict", again

    job = wait_job(server, "stop-job", {"complete", "failed", "cancelled"}, timeout=20)
    assert job["status"] == "complete", job
    assert job["progress"] == progress(4, 0, 4, 0), job
    assert statuses_of(server, "stop-job") == {i: "completed" for i in ids}
    for device in slow:
        assert len(device.patches) == 1, f"exactly one desired patch per device: {device}"
        assert device.values() == [66], device
        assert len(device.ack_list()) == 1, device
    for device in slow[1:]:
        assert device.patches[0][0] > resumed_at > stopped_at, device
    for prev, device in zip(slow, slow[1:]):
        assert device.patches[0][0] > prev.ack_list()[0][0], (prev, device)


# --------------------------------------------------------------------------------------------
# 6. SIGKILL in the middle of a job


def wait_reconnected(fleet_: list[JobDevice], timeout: float = 30) -> None:
    wait_for(lambda: all(d.device.client.connected for d in fleet_), timeout=timeout,
             interval=0.2, what=f"the SDK clients to reconnect: {fleet_}")


@pytest.mark.server_env(FLOTILLA_JOB_DEVICE_TIMEOUT_SECS=30)
def test_sigkill_during_a_property_job(server, devices):
    ids = [f"crash-{n}" for n in range(1, 6)]
    slow = fleet(devices, ids, THERMOSTAT_ID, ack_delay=1.5,
                 client_kwargs={"connection_retry_interval": 1})
    put_group(server, "crash-group", f'SELECT * FROM devices WHERE $template = "{THERMOSTAT_ID}"')
    create_job(server, "crash-job", {
        "group": "crash-group",
        "batch": {"type": "number", "value": 1},
        "data": [{"type": "property", "target": THERMOSTAT_ID, "path": "targetTemperature",
                  "value": 71}],
    })

    # Kill while crash-2 holds its patch, before its acknowledgement.
    wait_for(lambda: slow[1].property_patches(), timeout=15, what="crash-2's patch")
    assert slow[1].ack_list() == []
    server.kill()
    assert slow[1].ack_list() == [], "crash-2 must not have acknowledged before the kill"
    time.sleep(0.5)
    server.restart()
    wait_reconnected(slow)

    job = wait_job(server, "crash-job", {"complete", "failed", "cancelled"}, timeout=45)
    print(f"after the restart: {job}\n{job_devices(server, 'crash-job')}\n{slow}")
    assert job["status"] == "complete", (job, job_devices(server, "crash-job"), slow)
    p = job["progress"]
    assert p["completed"] + p["failed"] + p["pending"] == p["total"] == 5, job
    assert p == progress(5, 0, 5, 0), (job, job_devices(server, "crash-job"))
    assert job_devices(server, "crash-job") == [{"id": i, "status": "completed"} for i in ids]
    for device in slow:
        # Exactly one patch carrying the property per device (the SDK's own patch after the
        # reconnect, when the twin moved without it, carries none), acknowledged once.
        patches = device.property_patches()
        assert len(patches) == 1, f"a desired patch delivered more than once: {device}"
        version = patches[0][1]["$version"]
        assert [(v, x, c) for _, v, x, c in device.ack_list()] == [(version, 71, 200)], device
        assert desired_version(server, device.id, "targetTemperature") == version, device


@pytest.mark.server_env(FLOTILLA_JOB_DEVICE_TIMEOUT_SECS=30)
def test_sigkill_during_a_command_job_never_runs_a_command_twice(server, devices):
    restart_reason = ("the server restarted after sending the command and before its answer; "
                      "it was not sent again")
    since = "2021-06-15T05:00:00.000Z"
    ids = [f"cmdcrash-{n}" for n in range(1, 6)]
    slow = fleet(devices, ids, THERMOSTAT_ID, method_delay=1.5,
                 client_kwargs={"connection_retry_interval": 1})
    put_group(server, "cmdcrash-group",
              f'SELECT * FROM devices WHERE $template = "{THERMOSTAT_ID}"')
    create_job(server, "cmdcrash-job", {
        "group": "cmdcrash-group",
        "batch": {"type": "number", "value": 1},
        "data": [{"type": "command", "target": THERMOSTAT_ID, "path": "getMaxMinReport",
                  "value": since}],
    })

    # Kill while cmdcrash-2 runs its command, before it answers.
    wait_for(lambda: slow[1].invocation_list(), timeout=15, what="cmdcrash-2's command")
    server.kill()
    assert slow[1].answered == [], "cmdcrash-2 must not have answered before the kill"
    time.sleep(0.5)
    server.restart()
    wait_reconnected(slow)

    job = wait_job(server, "cmdcrash-job", {"complete", "failed", "cancelled"}, timeout=45)
    print(f"after the restart: {job}\n{job_devices(server, 'cmdcrash-job')}\n{slow}")
    assert job["status"] == "complete", (job, job_devices(server, "cmdcrash-job"), slow)
    p = job["progress"]
    assert p["pending"] == 0 and p["completed"] + p["failed"] == p["total"] == 5, job
    listed = {d["id"]: d for d in job_devices(server, "cmdcrash-job")}
    assert list(listed) == ids, listed
    for device in slow:
        calls = [(n, x) for _, n, x in device.invocation_list()]
        assert len(calls) <= 1, f"a command delivered twice: {device}"
        entry = listed[device.id]
        if device.id == "cmdcrash-2" and entry["status"] == "failed":
            # In flight at the kill: not sent again after the restart.
            assert entry["reason"] == restart_reason, entry
            assert calls == [("getMaxMinReport", since)], device
        else:
            assert calls == [("getMaxMinReport", since)], device
            assert entry == {"id": device.id, "status": "completed", "responseCode": 200,
                             "response": {"maxTemp": 30.5, "minTemp": 10.25,
                                          "device": device.id}}, (entry, device)
    assert p["failed"] == sum(1 for d in listed.values() if d["status"] == "failed"), (p, listed)
    # Some time later still nothing was delivered again.
    time.sleep(1.0)
    for device in slow:
        assert len(device.invocation_list()) == 1, device


# --------------------------------------------------------------------------------------------
# 7. Two jobs on the same devices run in the order they were created


def test_two_jobs_on_the_same_devices_apply_in_creation_order(server, devices):
    ids = ["ord-1", "ord-2", "ord-3"]
    fleet_ = fleet(devices, ids, THERMOSTAT_ID, ack_delay=0.3)
    put_group(server, "ord-group", f'SELECT * FROM devices WHERE $template = "{THERMOSTAT_ID}"')
    for job_id, value in (("ord-a", 10), ("ord-b", 20)):
        create_job(server, job_id, {
            "group": "ord-group",
            "data": [{"type": "property", "target": THERMOSTAT_ID, "path": "targetTemperature",
                      "value": value}],
        })
    for job_id in ("ord-a", "ord-b"):
        job = wait_job(server, job_id, {"complete", "failed", "cancelled"}, timeout=20)
        assert job["status"] == "complete", job
        assert job["progress"] == progress(3, 0, 3, 0), job
        assert job_devices(server, job_id) == [{"id": i, "status": "completed"} for i in ids]

    for device in fleet_:
        assert device.values() == [10, 20], device
        acks = device.ack_list()
        assert [x for _, _, x, _ in acks] == [10, 20], device
        # The second job's patch came only after the first job's acknowledgement.
        assert device.property_patches()[1][0] > acks[0][0], device
        props = server.rest.get(f"/devices/{device.id}/properties")
        assert props.status == 200, props
        assert props.body["targetTemperature"] == 20, props
        assert props.body["$metadata"]["targetTemperature"]["desiredValue"] == 20, props
        assert device.device.get_twin()["desired"]["targetTemperature"] == 20
