-- Job and job device statuses are the ones the state machine (`flotilla_model::job_state`)
-- knows, and a failed device's reason has a stable code beside its message.

ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'pending', 'running', 'stopped', 'complete', 'cancelled', 'failed'));

ALTER TABLE job_devices ADD CONSTRAINT job_devices_status_check CHECK (status IN (
    'pending', 'running', 'completed', 'failed'));

ALTER TABLE job_devices ADD COLUMN reason_code TEXT CONSTRAINT job_devices_reason_code_check
    CHECK (reason_code IN ('deviceDeleted', 'offline', 'noAcknowledgement', 'rejected',
    'timedOut', 'interrupted', 'concurrentChange', 'storageError'));
