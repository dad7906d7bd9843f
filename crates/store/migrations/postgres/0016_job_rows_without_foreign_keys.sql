-- No foreign keys from a job's per-device rows to its row: PostgreSQL checked each inserted
-- row against `jobs` with a query of its own (a trigger per row), which cost a cloud-property
-- job about a tenth of its database time (bench/cluster.py, 10,000 devices). Every such row is
-- written in the transaction that starts or imports its job, and `jobs` rows are deleted only
-- by an import that replaces a job, which deletes the job's rows itself
-- (`Store::put_imported_job`). SQLite keeps its foreign keys: it checks them by an index lookup
-- in the same B-tree walk.
ALTER TABLE job_devices DROP CONSTRAINT job_devices_job_id_fkey;
ALTER TABLE job_previous_values DROP CONSTRAINT job_previous_values_job_id_fkey;
