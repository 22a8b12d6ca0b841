-- Output schema, written only by the pipeline.
CREATE SCHEMA IF NOT EXISTS rec;

-- One row per trained model per DAG run. A rerun of the same data interval updates its row.
CREATE TABLE IF NOT EXISTS rec.model_runs (
    model_run_id        bigserial PRIMARY KEY,
    run_key             text NOT NULL,          -- the data interval end, ISO 8601: the idempotency key
    dag_run_id          text,
    model_name          text NOT NULL,
    data_interval_start timestamptz,
    data_interval_end   timestamptz NOT NULL,
    n_users             integer,
    n_videos            integer,
    n_train_rows        bigint,
    n_holdout_rows      bigint,
    params              jsonb NOT NULL DEFAULT '{}',
    metrics             jsonb NOT NULL DEFAULT '{}',
    rejected_counts     jsonb NOT NULL DEFAULT '{}',
    timings             jsonb NOT NULL DEFAULT '{}',
    status              text NOT NULL DEFAULT 'candidate'
                        CHECK (status IN ('candidate', 'published', 'rejected', 'failed')),
    status_reason       text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    published_at        timestamptz,
    UNIQUE (run_key, model_name)
);
COMMENT ON TABLE rec.model_runs IS 'One row per trained model per nightly run: data used, holdout metrics, publish status.';

-- Bad source rows, kept with the reason, never silently dropped.
CREATE TABLE IF NOT EXISTS rec.rejected_rows (
    rejected_id  bigserial PRIMARY KEY,
    run_key      text NOT NULL,
    source_table text NOT NULL,
    reason       text NOT NULL,
    row_data     jsonb NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_rows_run_key_idx ON rec.rejected_rows (run_key, source_table, reason);

-- Outputs: one list partition per model run, loaded into staging and attached at publish.
CREATE TABLE IF NOT EXISTS rec.similar_videos (
    model_run_id     bigint NOT NULL,
    video_id         bigint NOT NULL,
    rank             smallint NOT NULL,
    similar_video_id bigint NOT NULL,
    score            real NOT NULL
) PARTITION BY LIST (model_run_id);

CREATE TABLE IF NOT EXISTS rec.user_recommendations (
    model_run_id bigint NOT NULL,
    user_id      bigint NOT NULL,
    rank         smallint NOT NULL,
    video_id     bigint NOT NULL,
    score        real NOT NULL,
    segment      text NOT NULL CHECK (segment IN ('hot', 'warm', 'cold'))
) PARTITION BY LIST (model_run_id);
COMMENT ON COLUMN rec.user_recommendations.segment IS
    'How the user was served: hot = has views (model embeddings), warm = known only by domains, cold = no usable signal (popularity fallback).';

-- The fallback list for users the pipeline has never seen.
CREATE TABLE IF NOT EXISTS rec.popular_videos (
    model_run_id bigint NOT NULL,
    rank         smallint NOT NULL,
    video_id     bigint NOT NULL,
    score        real NOT NULL
) PARTITION BY LIST (model_run_id);

-- Which model run each output serves now. Publishing flips this row inside the swap transaction.
CREATE TABLE IF NOT EXISTS rec.serving (
    output_name  text PRIMARY KEY CHECK (output_name IN ('similar_videos', 'user_recommendations', 'popular_videos')),
    model_run_id bigint NOT NULL REFERENCES rec.model_runs (model_run_id),
    published_at timestamptz NOT NULL DEFAULT now()
);

-- The scalar subquery is an init plan, so the planner prunes to the one served partition.
CREATE OR REPLACE VIEW rec.similar_videos_current AS
SELECT model_run_id, video_id, rank, similar_video_id, score
FROM rec.similar_videos
WHERE model_run_id = (SELECT model_run_id FROM rec.serving WHERE output_name = 'similar_videos');

CREATE OR REPLACE VIEW rec.user_recommendations_current AS
SELECT model_run_id, user_id, rank, video_id, score, segment
FROM rec.user_recommendations
WHERE model_run_id = (SELECT model_run_id FROM rec.serving WHERE output_name = 'user_recommendations');

CREATE OR REPLACE VIEW rec.popular_videos_current AS
SELECT model_run_id, rank, video_id, score
FROM rec.popular_videos
WHERE model_run_id = (SELECT model_run_id FROM rec.serving WHERE output_name = 'popular_videos');
