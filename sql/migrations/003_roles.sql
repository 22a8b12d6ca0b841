-- Least privilege. Two roles (NOLOGIN: grant them to the login roles you create):
--   rec_pipeline: reads the source tables, owns schema rec (creates staging tables and partitions);
--   rec_reader:   may only SELECT the rec.*_current views (and the model history).
-- Views run with their owner's rights, so readers need no access to partitions, staging or serving.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_pipeline') THEN
        CREATE ROLE rec_pipeline NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_reader') THEN
        CREATE ROLE rec_reader NOLOGIN;
    END IF;
END
$$;

-- The pipeline reads the sources and never writes them.
GRANT USAGE ON SCHEMA public TO rec_pipeline;
GRANT SELECT ON videos, video_views, user_domain_visits TO rec_pipeline;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON videos, video_views, user_domain_visits FROM rec_pipeline;
GRANT SELECT ON public.rec_schema_migrations TO rec_pipeline;

-- The pipeline owns everything in rec (ATTACH PARTITION needs the owner of the parent table).
ALTER SCHEMA rec OWNER TO rec_pipeline;
ALTER TABLE rec.model_runs OWNER TO rec_pipeline;
ALTER SEQUENCE rec.model_runs_model_run_id_seq OWNER TO rec_pipeline;
ALTER TABLE rec.rejected_rows OWNER TO rec_pipeline;
ALTER SEQUENCE rec.rejected_rows_rejected_id_seq OWNER TO rec_pipeline;
ALTER TABLE rec.similar_videos OWNER TO rec_pipeline;
ALTER TABLE rec.user_recommendations OWNER TO rec_pipeline;
ALTER TABLE rec.popular_videos OWNER TO rec_pipeline;
ALTER TABLE rec.serving OWNER TO rec_pipeline;
ALTER VIEW rec.similar_videos_current OWNER TO rec_pipeline;
ALTER VIEW rec.user_recommendations_current OWNER TO rec_pipeline;
ALTER VIEW rec.popular_videos_current OWNER TO rec_pipeline;

-- Readers: the published views and the run history, nothing else in rec.
REVOKE ALL ON SCHEMA rec FROM PUBLIC;
GRANT USAGE ON SCHEMA rec TO rec_reader;
GRANT SELECT ON rec.similar_videos_current, rec.user_recommendations_current, rec.popular_videos_current,
    rec.model_runs TO rec_reader;
-- Downstream queries join titles.
GRANT USAGE ON SCHEMA public TO rec_reader;
GRANT SELECT ON videos TO rec_reader;
