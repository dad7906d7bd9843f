-- A job's devices by status: the engine's "first unfinished batch", its recovery of running
-- devices, and the order rule's look at other jobs' running devices all read by (job, status).
CREATE INDEX job_devices_by_status ON job_devices (job_id, status, batch);
