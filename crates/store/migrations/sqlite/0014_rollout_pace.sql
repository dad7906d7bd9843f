-- Rollout pace (issue 14): the reason code `deadline`, and the batch a job's batch gate was
-- held at.
--
-- SQLite cannot change a column's CHECK constraint: the column is replaced by one without it,
-- and triggers enforce the list (as 0007 does for statuses), so that a later code only needs
-- its triggers replaced.

ALTER TABLE job_devices RENAME COLUMN reason_code TO reason_code_before_0014;
ALTER TABLE job_devices ADD COLUMN reason_code TEXT;
UPDATE job_devices SET reason_code = reason_code_before_0014
    WHERE reason_code_before_0014 IS NOT NULL;
ALTER TABLE job_devices DROP COLUMN reason_code_before_0014;

CREATE TRIGGER job_devices_reason_code_insert BEFORE INSERT ON job_devices
WHEN NEW.reason_code IS NOT NULL AND NEW.reason_code NOT IN ('deviceDeleted', 'offline',
    'noAcknowledgement', 'rejected', 'timedOut', 'interrupted', 'concurrentChange',
    'storageError', 'deadline')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.reason_code');
END;

CREATE TRIGGER job_devices_reason_code_update BEFORE UPDATE OF reason_code ON job_devices
WHEN NEW.reason_code IS NOT NULL AND NEW.reason_code NOT IN ('deviceDeleted', 'offline',
    'noAcknowledgement', 'rejected', 'timedOut', 'interrupted', 'concurrentChange',
    'storageError', 'deadline')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: job_devices.reason_code');
END;

-- The batch whose gate stopped the job: once a user resumes it, that batch goes ahead.
ALTER TABLE jobs ADD COLUMN gate_held_batch BIGINT;
