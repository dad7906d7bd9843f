-- How many times each job device's operation was started (a retry starts it again), and when a
-- device waiting for its retry may start again (null: at once).
ALTER TABLE job_devices ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_devices ADD COLUMN retry_at_ms BIGINT;
-- Devices that started before this migration were tried once.
UPDATE job_devices SET attempts = 1 WHERE started_ms IS NOT NULL;
