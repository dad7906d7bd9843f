-- Job and job device statuses are the ones the state machine (`flotilla_model::job_state`)
-- knows, and a failed device's reason has a stable code beside its message.
--
-- SQLite cannot add a CHECK constraint to an existing table, and rebuilding `jobs` would
-- cascade-delete every `job_devices` row (foreign keys are on, and cannot be turned off inside
-- the migration's transaction): triggers enforce the same rule and leave the data in place.

ALTER TABLE job_devices ADD COLUMN reason_code TEXT CHECK (reason_code IN (
    'deviceDeleted', 'offline', 'noAcknowledgement', 'rejected', 'timedOut', 'interrupted',
    'concurrentChange', 'storageError'));

CREATE TRIGGER jobs_status_insert BEFORE INSERT ON jobs
WHEN NEW.status NOT IN ('pending', 'running', 'stopped', 'complete', 'cancelled', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: jobs.status');
END;

CREATE TRIGGER jobs_status_update BEFORE UPDATE OF status ON jobs
WHEN NEW.status NOT IN ('pending', 'running', 'stopped', 'complete', 'cancelled', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: jobs.status');
END;

CREATE TRIGGER job_devices_status_insert BEFORE INSERT ON job_devices
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.status');
END;

CREATE TRIGGER job_devices_status_update BEFORE UPDATE OF status ON job_devices
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.status');
END;
