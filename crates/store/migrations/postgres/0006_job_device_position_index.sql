-- A job's device list pages in the job's order (`GET /jobs/{id}/devices`, keyset on the
-- position): without this index every page scanned and sorted all of the job's devices.
CREATE INDEX job_devices_by_position ON job_devices (job_id, position);
