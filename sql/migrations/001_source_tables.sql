-- Source tables the pipeline reads. They are owned upstream; IF NOT EXISTS keeps this harmless
-- where they already exist, and lets the demo and tests create them on an empty database.
CREATE TABLE IF NOT EXISTS videos (
    video_id     bigint PRIMARY KEY,
    title        text NOT NULL,
    description  text,
    tags         text[],
    published_at timestamptz,
    is_active    boolean
);

CREATE TABLE IF NOT EXISTS video_views (
    user_id       bigint,
    video_id      bigint,
    viewed_at     timestamptz,
    watch_seconds int
);

-- The user domain histories: one row per user, domain and day.
CREATE TABLE IF NOT EXISTS user_domain_visits (
    user_id    bigint,
    domain     text,
    visit_date date,
    visits     int
);

-- The extract reads "as of" a time: these make that a range scan, not a full one.
CREATE INDEX IF NOT EXISTS video_views_viewed_at_idx ON video_views (viewed_at);
CREATE INDEX IF NOT EXISTS user_domain_visits_visit_date_idx ON user_domain_visits (visit_date);
