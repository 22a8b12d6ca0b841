-- 'failed' was allowed as a model run status but never written: a task that fails is marked failed by
-- Airflow, and its model run (if evaluate got that far) stays a candidate. Only written statuses remain.
UPDATE rec.model_runs SET status = 'rejected', status_reason = coalesce(status_reason, 'marked failed')
WHERE status = 'failed';
ALTER TABLE rec.model_runs DROP CONSTRAINT IF EXISTS model_runs_status_check;
ALTER TABLE rec.model_runs ADD CONSTRAINT model_runs_status_check
    CHECK (status IN ('candidate', 'published', 'rejected'));
