-- A job device may end `skipped` (the job's offline policy skipped it: neither completed nor
-- failed), and a job counts its skipped devices beside its completed and failed ones.

ALTER TABLE jobs ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;

ALTER TABLE job_devices DROP CONSTRAINT job_devices_status_check;
ALTER TABLE job_devices ADD CONSTRAINT job_devices_status_check CHECK (status IN (
    'pending', 'running', 'completed', 'failed', 'skipped'));
