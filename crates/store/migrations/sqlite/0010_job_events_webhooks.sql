-- Live job events and webhooks.
--
-- A job's finished devices in the order their finishes committed: each finish takes its
-- sequence number from the job's counter `device_seq`, in the transaction that finishes it
-- (holding the job's row until commit), so a reader's cursor on `finish_seq` never skips a
-- finish that committed late. Sequences increase but may have gaps.
ALTER TABLE jobs ADD COLUMN device_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_devices ADD COLUMN finish_seq BIGINT;
-- Devices that finished before this migration, in the job's order.
UPDATE job_devices SET finish_seq = position + 1 WHERE status IN ('completed', 'failed');
UPDATE jobs SET device_seq = total + 1;
CREATE INDEX job_devices_by_finish ON job_devices (job_id, finish_seq) WHERE finish_seq IS NOT NULL;

-- Webhooks: where job events are POSTed, signed with the secret (kept as given: it signs).
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    secret       TEXT NOT NULL,
    -- A JSON array of event names (job.status, job.progress, job.device).
    events       TEXT NOT NULL,
    display_name TEXT,
    created_ms   BIGINT NOT NULL
);

-- What each webhook was last sent about each job: deliveries are made from the difference
-- between this and the job's rows, in the transaction that moves it (a compare-and-swap).
CREATE TABLE webhook_cursors (
    webhook_id    TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    job_id        TEXT NOT NULL,
    status        TEXT NOT NULL,
    device_seq    BIGINT NOT NULL,
    progress_done BIGINT NOT NULL,
    progress_ms   BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, job_id)
);

-- The outbox: one row per delivery, its attempts and outcome. Ids sort by creation time.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_ms         BIGINT NOT NULL,
    -- A server sending it holds it until then (a server that died mid-attempt lets it go).
    claimed_until   BIGINT,
    response_status BIGINT,
    error           TEXT,
    created_ms      BIGINT NOT NULL,
    last_attempt_ms BIGINT,
    delivered_ms    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_ms) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
