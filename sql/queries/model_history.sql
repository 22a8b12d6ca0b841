-- Every model run, newest first: holdout quality, what it was trained on, and whether it serves now.
SELECT m.model_run_id, m.model_name, m.data_interval_end, m.status, m.status_reason,
       (m.metrics->>'ndcg@10')::float8   AS ndcg_at_10,
       (m.metrics->>'recall@10')::float8 AS recall_at_10,
       m.n_users, m.n_videos, m.n_train_rows,
       EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id) AS serving_now
FROM rec.model_runs m
ORDER BY m.data_interval_end DESC, m.model_name;
