-- Validation judges only what changed: each source day's verdicts are kept, with the day's fingerprint,
-- and a later night judges a day again only when its rows (or the rules) changed. UNLOGGED: a crash of
-- the server empties the verdicts and their ledger together, and the next night judges every day anew.
CREATE UNLOGGED TABLE IF NOT EXISTS rec.judged_days (
    source_table text        NOT NULL,
    day          date        NOT NULL,  -- UTC day of the row's time; -infinity: rows without one
    rows         bigint      NOT NULL,
    fingerprint  bigint      NOT NULL,  -- sum of the rows' hashes (see rec_models.data.judged)
    rules        text        NOT NULL,  -- the rules' digest: changed rules judge every day again
    judged_at    timestamptz NOT NULL,  -- a day not over then ("in the future" rules) is judged again
    PRIMARY KEY (source_table, day)
);

-- One source's verdicts per table: its rows, normalised, and the first rule each breaks (NULL: good).
CREATE UNLOGGED TABLE IF NOT EXISTS rec.judged_videos (
    day          date NOT NULL,
    video_id     bigint,
    title        text,
    description  text,
    tags         text[],
    published_at timestamptz,
    is_active    boolean,
    reason       text
);

-- A view's verdict but for the catalogue rule ("view of an unknown video"), which each night applies
-- with its own catalogue; copy_number > 1 marks a duplicate.
CREATE UNLOGGED TABLE IF NOT EXISTS rec.judged_video_views (
    day           date NOT NULL,
    user_id       bigint,
    video_id      bigint,
    viewed_at     timestamptz,
    watch_seconds int,
    row_reason    text,
    copy_number   bigint
);

CREATE UNLOGGED TABLE IF NOT EXISTS rec.judged_user_domain_visits (
    day        date NOT NULL,
    user_id    bigint,
    raw_domain text,
    domain     text,
    visit_date date,
    visits     int,
    reason     text
);

-- Days are written in batches: a block range index finds a day's rows for a fraction of a btree's upkeep.
CREATE INDEX IF NOT EXISTS judged_videos_day_idx ON rec.judged_videos USING brin (day);
CREATE INDEX IF NOT EXISTS judged_video_views_day_idx ON rec.judged_video_views USING brin (day);
CREATE INDEX IF NOT EXISTS judged_user_domain_visits_day_idx ON rec.judged_user_domain_visits USING brin (day);

ALTER TABLE rec.judged_days OWNER TO rec_pipeline;
ALTER TABLE rec.judged_videos OWNER TO rec_pipeline;
ALTER TABLE rec.judged_video_views OWNER TO rec_pipeline;
ALTER TABLE rec.judged_user_domain_visits OWNER TO rec_pipeline;

-- The per-run tables of judged rows that the extract dropped are gone for good.
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT relname FROM pg_class WHERE relnamespace = 'rec'::regnamespace AND relkind = 'r'
             AND relname ~ '^checked_(videos|video_views|user_domain_visits)_' LOOP
        EXECUTE format('DROP TABLE rec.%I', t);
    END LOOP;
END
$$;
