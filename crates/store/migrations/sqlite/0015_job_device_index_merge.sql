-- A job's devices by status and by batch in one index instead of two: a change of a device's
-- status writes an entry in each index that holds the status, and by_status (job, status,
-- batch) and by_batch (job, batch, status, position) served the same reads. A read of one
-- batch names the statuses too (`status IN (...) AND batch = ?`, see `jobs::statuses_except`),
-- so it walks a few short ranges of this index.
DROP INDEX job_devices_by_status;
DROP INDEX job_devices_by_batch;
CREATE INDEX job_devices_by_status_batch ON job_devices (job_id, status, batch, position);
