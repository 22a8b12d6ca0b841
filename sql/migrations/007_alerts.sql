-- Alerts: what operators were told, one row per event and cause (an outbox). A task records an event
-- here; Airflow's notifiers (SMTP, Apprise) deliver what is not yet sent. The same cause again in the
-- same night (several models failing the same way) counts in `occurrences` instead of another message.
CREATE TABLE IF NOT EXISTS rec.alerts (
    alert_id     bigserial PRIMARY KEY,
    run_key      text NOT NULL,              -- the night (its data interval end), or the DAG run id
    event        text NOT NULL CHECK (event IN ('task_failed', 'run_failed', 'run_timed_out', 'gate_rejected',
                                                 'night_skipped', 'retention_failed', 'disk_low',
                                                 'deadline_missed')),
    cause        text NOT NULL,              -- what makes two events one message: the reason, model names out
    model_name   text,
    subject      text NOT NULL,
    body         text NOT NULL,
    link         text,                       -- the DAG run in Airflow's UI
    occurrences  integer NOT NULL DEFAULT 1,
    raised_at    timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,                -- NULL: not delivered yet
    channels     text[],                     -- where it went: smtp:<conn id>, apprise:<conn id>
    UNIQUE (run_key, event, cause)
);
ALTER TABLE rec.alerts OWNER TO rec_pipeline;
ALTER SEQUENCE rec.alerts_alert_id_seq OWNER TO rec_pipeline;
COMMENT ON TABLE rec.alerts IS 'Alerts raised by the nightly runs and where they were delivered (one row per night, event and cause).';
GRANT SELECT ON rec.alerts TO rec_ui;
