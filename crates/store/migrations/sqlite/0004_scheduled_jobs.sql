-- Scheduled jobs, and the occurrences that created a job: the primary key of
-- scheduled_job_runs is what makes an occurrence create exactly one job, across restarts and
-- replicas.

CREATE TABLE scheduled_jobs (
    id              TEXT PRIMARY KEY,
    etag            TEXT NOT NULL,
    definition      TEXT NOT NULL,
    schedule        TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL,
    completed       BOOLEAN NOT NULL,
    -- The first occurrence (0 = the start) not yet run or skipped.
    next_occurrence BIGINT NOT NULL,
    created_ms      BIGINT NOT NULL
);

CREATE TABLE scheduled_job_runs (
    scheduled_job_id TEXT NOT NULL,
    occurrence       BIGINT NOT NULL,
    job_id           TEXT NOT NULL,
    PRIMARY KEY (scheduled_job_id, occurrence)
);
