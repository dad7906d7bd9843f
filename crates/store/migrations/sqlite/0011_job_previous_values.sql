-- What each job changed, for a revert: per device and capability (a writable property or a
-- cloud property), the value before the job's write, recorded in the write's transaction.
-- component is '' for a capability outside any component.
CREATE TABLE job_previous_values (
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('property', 'cloudProperty')),
    component TEXT NOT NULL,
    name      TEXT NOT NULL,
    -- JSON.
    value     TEXT NOT NULL,
    PRIMARY KEY (job_id, device_id, kind, component, name)
);
