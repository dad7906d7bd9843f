-- Rollout pace (issue 14): the reason code `deadline`, and the batch a job's batch gate was
-- held at.

ALTER TABLE job_devices DROP CONSTRAINT job_devices_reason_code_check;
ALTER TABLE job_devices ADD CONSTRAINT job_devices_reason_code_check
    CHECK (reason_code IN ('deviceDeleted', 'offline', 'noAcknowledgement', 'rejected',
    'timedOut', 'interrupted', 'concurrentChange', 'storageError', 'deadline'));

-- The batch whose gate stopped the job: once a user resumes it, that batch goes ahead.
ALTER TABLE jobs ADD COLUMN gate_held_batch BIGINT;
