-- Jobs and the state of each of their devices. A job's progress counters are kept beside it and
-- changed in the same transaction as the device state they count, so they never drift.

CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    -- Creation order (time, then a tie-breaker): lists are newest first, and a device that two
    -- jobs target gets their operations in this order.
    sort_key         TEXT COLLATE "C" NOT NULL UNIQUE,
    scheduled_job_id TEXT,
    definition       TEXT NOT NULL,
    status           TEXT NOT NULL,
    reason           TEXT,
    start_ms         BIGINT,
    end_ms           BIGINT,
    total            BIGINT NOT NULL DEFAULT 0,
    completed        BIGINT NOT NULL DEFAULT 0,
    failed           BIGINT NOT NULL DEFAULT 0,
    batch_size       BIGINT NOT NULL DEFAULT 0,
    rerun_of         TEXT,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX jobs_by_status ON jobs (status);

CREATE TABLE job_devices (
    job_id          TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    device_id       TEXT COLLATE "C" NOT NULL,
    position        BIGINT NOT NULL,
    batch           BIGINT NOT NULL,
    -- pending, running, completed or failed.
    status          TEXT NOT NULL,
    reason          TEXT,
    -- What the device answered (a command's response), as JSON.
    detail          TEXT,
    -- Set when the device's operation started: its deadline, and for a property job the
    -- desired version written; for a command job, whether the method was sent.
    deadline_ms     BIGINT,
    desired_version BIGINT,
    sent            BIGINT NOT NULL DEFAULT 0,
    started_ms      BIGINT,
    finished_ms     BIGINT,
    PRIMARY KEY (job_id, device_id)
);
CREATE INDEX job_devices_by_batch ON job_devices (job_id, batch, status, position);
CREATE INDEX job_devices_by_device ON job_devices (device_id, status);
