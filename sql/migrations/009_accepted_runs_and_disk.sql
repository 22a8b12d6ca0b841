-- Only the serving model (and those named in the setting publish_models) has every user's list scored
-- and published; the other models that pass their gates are kept as candidates. A later night continues
-- from, and is gated against, a model's latest accepted run: published or kept.
ALTER TABLE rec.model_runs ADD COLUMN IF NOT EXISTS accepted_at timestamptz;
COMMENT ON COLUMN rec.model_runs.accepted_at IS
    'When the run passed its quality gate (NULL: rejected or not gated yet); published or kept as a candidate.';
UPDATE rec.model_runs SET accepted_at = published_at WHERE accepted_at IS NULL AND published_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS model_runs_accepted_idx ON rec.model_runs (model_name, data_interval_end)
    WHERE accepted_at IS NOT NULL;

-- The disk each night was expected to need before training (the pre-flight check) and what it took.
ALTER TABLE rec.night_checks
    ADD COLUMN IF NOT EXISTS expected_run_folder_bytes bigint,  -- the newest earlier run folder's bytes
    ADD COLUMN IF NOT EXISTS run_root_free_bytes       bigint,  -- NULL: an object store (no disk of ours)
    ADD COLUMN IF NOT EXISTS expected_database_bytes   bigint,  -- what the newest earlier night added
    ADD COLUMN IF NOT EXISTS database_free_bytes       bigint,  -- NULL: the server's disk cannot be seen
    ADD COLUMN IF NOT EXISTS database_bytes_before     bigint,  -- pg_database_size before training
    ADD COLUMN IF NOT EXISTS run_folder_bytes          bigint,  -- at the night's end
    ADD COLUMN IF NOT EXISTS database_bytes            bigint;  -- pg_database_size at the night's end
