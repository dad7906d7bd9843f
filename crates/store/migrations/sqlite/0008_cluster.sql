-- The same tables as PostgreSQL's 0008, so the same statements run: a SQLite database has one
-- server at a time, which registers and owns its job devices like any replica.

-- Several servers on one database (cluster mode): which servers are alive, which one holds
-- each device's connection, method calls and pushes handed from one server to another, the
-- server working each job device, and leases (the scheduler's leader).

-- One row per server process: its heartbeat, in the database's time, is its lease.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    -- The data dir's own id: a server restarted on the same data dir retires its earlier rows
    -- at once instead of waiting for their lease to run out.
    instance     TEXT NOT NULL,
    -- The host name DPS hands out and the server presents.
    hostname     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('alive', 'dead')),
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);

-- Which server holds a device's connection now (one per device in the whole cluster).
CREATE TABLE device_connections (
    device_id     TEXT PRIMARY KEY,
    replica_id    TEXT NOT NULL,
    connection_id BIGINT NOT NULL,
    since_ms      BIGINT NOT NULL
);
CREATE INDEX device_connections_by_replica ON device_connections (replica_id);

-- A call one server asks another to make on a device it holds (a direct method, or a desired
-- patch to push), and its answer. Signals carry only the id; the row is the truth.
CREATE TABLE device_calls (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL,
    -- The server waiting for the answer, and the one asked to make the call.
    caller      TEXT NOT NULL,
    holder      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('invoke', 'push')),
    request     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'failed', 'moved')),
    response    TEXT,
    created_ms  BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL
);
CREATE INDEX device_calls_by_holder ON device_calls (holder, status);

-- The server working a running job device; every write it makes to the row checks it.
ALTER TABLE job_devices ADD COLUMN owner TEXT;

-- Named leases (`leader`): held by one server until it expires, in the database's time.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
