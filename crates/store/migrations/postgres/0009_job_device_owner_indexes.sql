-- A dead replica's running job devices are found by their owner (the sweep), and running
-- devices without an owner by any replica's engine (orphans to claim): both stay small, so
-- partial indexes keep them cheap beside a job table of millions of finished rows.
CREATE INDEX job_devices_by_owner ON job_devices (owner) WHERE owner IS NOT NULL;
CREATE INDEX job_devices_orphaned ON job_devices (job_id) WHERE status = 'running' AND owner IS NULL;
