-- Browsing histories and what is learnt from them are personal data. This migration adds erasure on
-- request, retention by rule, and one quarantine row per rejected source row.

-- Erasure requests (GDPR art. 17, CCPA deletion): filled by upstream tooling or an operator
-- (`python -m rec_models forget`, or INSERT ... SELECT for bulk). Every night (and the DAG
-- erase_personal_data, on demand) removes each requested person from every place the product owns
-- and marks the request done with what it removed. The user id stays here as the suppression list:
-- the pipeline never reads, trains on or publishes a requested person again, even while upstream's
-- tables still hold them.
CREATE TABLE IF NOT EXISTS rec.erasure_requests (
    request_id   bigserial PRIMARY KEY,
    user_id      bigint NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    requested_by text NOT NULL DEFAULT current_user,
    done_at      timestamptz,                    -- NULL: not every place is clean yet
    removed      jsonb NOT NULL DEFAULT '{}',    -- rows or files removed, per place
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text                            -- why the last attempt left places unclean
);
CREATE UNIQUE INDEX IF NOT EXISTS erasure_requests_open_user_idx ON rec.erasure_requests (user_id)
    WHERE done_at IS NULL;
CREATE INDEX IF NOT EXISTS erasure_requests_user_idx ON rec.erasure_requests (user_id);
ALTER TABLE rec.erasure_requests OWNER TO rec_pipeline;
ALTER SEQUENCE rec.erasure_requests_request_id_seq OWNER TO rec_pipeline;
COMMENT ON TABLE rec.erasure_requests IS
    'People to forget: removed from every place the product owns, and never read or published again.';

-- Whoever files requests (a privacy tool, the data protection officer) gets this role and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rec_privacy') THEN
        CREATE ROLE rec_privacy NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA rec TO rec_privacy;
GRANT SELECT, INSERT ON rec.erasure_requests TO rec_privacy;
GRANT USAGE ON SEQUENCE rec.erasure_requests_request_id_seq TO rec_privacy;

-- What each night's retention removed, per place (the lifetimes are settings: see the README).
CREATE TABLE IF NOT EXISTS rec.retention_runs (
    run_key   text NOT NULL,
    place     text NOT NULL,
    lifetime  text NOT NULL,      -- the rule, as the setting says it
    removed   bigint NOT NULL,    -- rows, partitions or paths removed
    ran_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_key, place)
);
ALTER TABLE rec.retention_runs OWNER TO rec_pipeline;
GRANT SELECT ON rec.retention_runs TO rec_ui;

-- One quarantine row per rejected source row: a day re-delivered inside every window that holds it
-- is quarantined once. row_hash identifies the row (its values, reason and copy number among
-- identical rows); run_key is the night that first quarantined it, last_seen_end the interval end
-- of the latest night whose window held it (what its lifetime counts from).
ALTER TABLE rec.rejected_rows ADD COLUMN IF NOT EXISTS row_hash text;
ALTER TABLE rec.rejected_rows ADD COLUMN IF NOT EXISTS last_seen_end timestamptz;
UPDATE rec.rejected_rows r SET row_hash = h.row_hash, last_seen_end = r.detected_at
FROM (
    SELECT rejected_id, md5(reason || ':' || row_number() OVER (
               PARTITION BY run_key, source_table, reason, row_data::text ORDER BY rejected_id)
               || ':' || row_data::text) AS row_hash
    FROM rec.rejected_rows WHERE row_hash IS NULL
) h
WHERE r.rejected_id = h.rejected_id;
DELETE FROM rec.rejected_rows r USING rec.rejected_rows first
WHERE first.source_table = r.source_table AND first.row_hash = r.row_hash AND first.rejected_id < r.rejected_id;
ALTER TABLE rec.rejected_rows ALTER COLUMN row_hash SET NOT NULL;
ALTER TABLE rec.rejected_rows ALTER COLUMN last_seen_end SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS rejected_rows_row_idx ON rec.rejected_rows (source_table, row_hash);
CREATE INDEX IF NOT EXISTS rejected_rows_user_idx ON rec.rejected_rows ((row_data ->> 'user_id'))
    WHERE row_data ? 'user_id';
CREATE INDEX IF NOT EXISTS rejected_rows_last_seen_idx ON rec.rejected_rows (last_seen_end);

-- Alerts gain the erasure's own event.
ALTER TABLE rec.alerts DROP CONSTRAINT IF EXISTS alerts_event_check;
ALTER TABLE rec.alerts ADD CONSTRAINT alerts_event_check CHECK (event IN (
    'task_failed', 'run_failed', 'run_timed_out', 'gate_rejected', 'night_skipped', 'retention_failed',
    'disk_low', 'deadline_missed', 'erasure_failed'));

-- The Users page shows nothing about a person who asked to be forgotten, even while upstream's table
-- still holds their visits.
CREATE OR REPLACE FUNCTION rec.user_top_domains(p_user_id bigint, p_limit integer DEFAULT 10)
RETURNS TABLE (domain text, visits bigint, days bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT d.domain, sum(d.visits)::bigint, count(*)
    FROM public.user_domain_visits d
    WHERE d.user_id = p_user_id
      AND NOT EXISTS (SELECT 1 FROM rec.erasure_requests e WHERE e.user_id = p_user_id)
    GROUP BY d.domain
    ORDER BY sum(d.visits) DESC, d.domain
    LIMIT least(greatest(p_limit, 0), 100)
$$;
