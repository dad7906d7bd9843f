-- The device side: each device's twin (desired and reported documents with their versions), the
-- last value of each telemetry, command history, and the MQTT subscriptions a device keeps
-- across connections (CleanSession=0).

ALTER TABLE devices ADD COLUMN desired TEXT NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN desired_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE devices ADD COLUMN reported TEXT NOT NULL DEFAULT '{}';
ALTER TABLE devices ADD COLUMN reported_version BIGINT NOT NULL DEFAULT 1;

CREATE TABLE device_telemetry (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    component TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    time_ms   BIGINT NOT NULL,
    PRIMARY KEY (device_id, component, name)
);

CREATE TABLE device_commands (
    id                 TEXT PRIMARY KEY,
    device_id          TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    component          TEXT NOT NULL,
    name               TEXT NOT NULL,
    connection_timeout BIGINT NOT NULL,
    response_timeout   BIGINT NOT NULL,
    request            TEXT,
    response           TEXT,
    response_code      BIGINT,
    created_ms         BIGINT NOT NULL
);
CREATE INDEX device_commands_by_device ON device_commands (device_id, component, name, id);

CREATE TABLE mqtt_sessions (
    client_id     TEXT PRIMARY KEY,
    subscriptions TEXT NOT NULL
);
