-- A job's devices by status and by batch in one index instead of two: every change of a
-- device's status writes an entry in each index of job_devices (eight before this), and
-- by_status (job, status, batch) and by_batch (job, batch, status, position) served the same
-- reads. A read of one batch names the statuses too (`status IN (...) AND batch = ?`, see
-- `jobs::statuses_except`), so it walks a few short ranges of this index.
DROP INDEX job_devices_by_status;
DROP INDEX job_devices_by_batch;
CREATE INDEX job_devices_by_status_batch ON job_devices (job_id, status, batch, position);

-- Room in each page for a row's next version: a device's property version or its `sent` mark
-- changes no indexed column, and with room on the page PostgreSQL writes it in place of the
-- old one (a HOT update) without an entry in any index. Applies to pages written from now on.
ALTER TABLE job_devices SET (fillfactor = 70);
