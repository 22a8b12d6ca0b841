-- The Recommendations view reads through its own role, rec_ui (NOLOGIN: grant it to the view's login):
-- the _current views, the run history and health, which run serves, and video titles. Browsing
-- histories are personal data: rec_ui cannot read user_domain_visits; the view calls
-- rec.user_top_domains() (SECURITY DEFINER, owned by rec_pipeline) only for users whom Airflow
-- authorizes to see them. rec_reader stays as it was for downstream SQL.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_ui') THEN
        CREATE ROLE rec_ui NOLOGIN;
    END IF;
END
$$;

-- Health of each published run, computed once when it publishes (the Health page reads one row
-- instead of counting tens of millions of rows per page load).
CREATE TABLE IF NOT EXISTS rec.run_health (
    model_run_id     bigint PRIMARY KEY REFERENCES rec.model_runs (model_run_id) ON DELETE CASCADE,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    known_users      bigint NOT NULL,   -- users with views or domain visits in the run's window
    active_videos    bigint NOT NULL,
    users_served     bigint NOT NULL,   -- users with a list
    videos_listed    bigint NOT NULL,   -- distinct videos in any user's list
    similar_for      bigint NOT NULL,   -- videos with similar videos
    slots            bigint NOT NULL,   -- rows of user lists
    top1pct_share    double precision,  -- share of slots taken by the top 1% of videos
    previous_run_id  bigint,            -- the model's previous published run still kept, if any
    churn            double precision,  -- share of (user, video) pairs not in the previous run's lists
    segments         jsonb NOT NULL,    -- users per segment
    sample_users     jsonb NOT NULL     -- one user id per segment, for the Users page
);
ALTER TABLE rec.run_health OWNER TO rec_pipeline;
COMMENT ON TABLE rec.run_health IS 'Coverage, churn and concentration of each published run, computed at publish.';

CREATE OR REPLACE FUNCTION rec.user_top_domains(p_user_id bigint, p_limit integer DEFAULT 10)
RETURNS TABLE (domain text, visits bigint, days bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT d.domain, sum(d.visits)::bigint, count(*)
    FROM public.user_domain_visits d
    WHERE d.user_id = p_user_id
    GROUP BY d.domain
    ORDER BY sum(d.visits) DESC, d.domain
    LIMIT least(greatest(p_limit, 0), 100)
$$;
ALTER FUNCTION rec.user_top_domains(bigint, integer) OWNER TO rec_pipeline;
REVOKE ALL ON FUNCTION rec.user_top_domains(bigint, integer) FROM PUBLIC;
COMMENT ON FUNCTION rec.user_top_domains(bigint, integer) IS
    'A user''s most visited domains: personal data, for the Recommendations view''s authorized users only.';

GRANT USAGE ON SCHEMA rec TO rec_ui;
GRANT SELECT ON rec.similar_videos_current, rec.user_recommendations_current, rec.popular_videos_current,
    rec.model_runs, rec.serving, rec.run_health TO rec_ui;
GRANT EXECUTE ON FUNCTION rec.user_top_domains(bigint, integer) TO rec_ui;
GRANT USAGE ON SCHEMA public TO rec_ui;
GRANT SELECT ON videos TO rec_ui;
