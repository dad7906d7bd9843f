-- A job device may end `skipped` (the job's offline policy skipped it: neither completed nor
-- failed), and a job counts its skipped devices beside its completed and failed ones.
-- SQLite checks statuses with triggers (see 0007): they are replaced with the longer list.

ALTER TABLE jobs ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;

DROP TRIGGER job_devices_status_insert;
DROP TRIGGER job_devices_status_update;

CREATE TRIGGER job_devices_status_insert BEFORE INSERT ON job_devices
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed', 'skipped')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.status');
END;

CREATE TRIGGER job_devices_status_update BEFORE UPDATE OF status ON job_devices
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed', 'skipped')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.status');
END;
