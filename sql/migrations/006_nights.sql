-- Night after night: how each model was trained (from scratch or continued from a parent run's
-- checkpoint), what each night's data check found, and whether yesterday's lists were watched.
ALTER TABLE rec.model_runs ADD COLUMN IF NOT EXISTS train_mode text
    CHECK (train_mode IN ('full', 'warm'));
ALTER TABLE rec.model_runs ADD COLUMN IF NOT EXISTS parent_model_run_id bigint
    REFERENCES rec.model_runs (model_run_id) ON DELETE SET NULL;
COMMENT ON COLUMN rec.model_runs.train_mode IS
    'full: trained from scratch; warm: continued from the checkpoint of parent_model_run_id.';
COMMENT ON COLUMN rec.model_runs.parent_model_run_id IS
    'The published run whose weights a warm run continued from (kept on a rerun, so reruns reproduce).';

-- One row per night (data interval): what the data check before training found. A night that
-- skipped training says why here, and the run that served before keeps serving.
CREATE TABLE IF NOT EXISTS rec.night_checks (
    run_key             text PRIMARY KEY,
    dag_run_id          text,
    data_interval_start timestamptz,
    data_interval_end   timestamptz NOT NULL,
    views_in_interval   bigint NOT NULL,
    median_daily_views  double precision,   -- over the days before the interval (up to 7)
    trained             boolean NOT NULL,
    reason              text,                -- why training was skipped (NULL when it was not)
    checked_at          timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE rec.night_checks OWNER TO rec_pipeline;
COMMENT ON TABLE rec.night_checks IS 'The data check of each night before training: views in the interval, and why a night was skipped.';

-- Next-day replay: each published run's lists scored against the views of the next interval.
-- ranker: 'model' (the run's own lists) or 'popularity' (that run's popular list, the baseline).
CREATE TABLE IF NOT EXISTS rec.next_day_metrics (
    model_run_id  bigint NOT NULL REFERENCES rec.model_runs (model_run_id) ON DELETE CASCADE,
    run_key       text NOT NULL,        -- the night that measured it (whose interval holds the views)
    ranker        text NOT NULL CHECK (ranker IN ('model', 'popularity')),
    segment       text NOT NULL,        -- hot, warm, cold, all, or new_videos
    metric        text NOT NULL,        -- hr@10, recall@10, ndcg@10, users, coverage, new_videos, ...
    value         double precision NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_run_id, run_key, ranker, segment, metric)
);
ALTER TABLE rec.next_day_metrics OWNER TO rec_pipeline;
COMMENT ON TABLE rec.next_day_metrics IS
    'Did people watch what we served? Each published run''s top 10 against the next interval''s new views.';

GRANT SELECT ON rec.night_checks, rec.next_day_metrics TO rec_ui, rec_reader;
