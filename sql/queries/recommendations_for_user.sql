-- A user's recommended videos from the published run; a user the pipeline has never seen gets
-- the popular list (segment 'unknown'), so a service can always answer with one query.
-- Parameter $1: user_id.
WITH known AS (
    SELECT r.rank, r.video_id, r.score, r.segment
    FROM rec.user_recommendations_current r
    WHERE r.user_id = $1
), fallback AS (
    SELECT p.rank, p.video_id, p.score, 'unknown'::text AS segment
    FROM rec.popular_videos_current p
    WHERE NOT EXISTS (SELECT 1 FROM known)
)
SELECT x.rank, x.video_id, v.title, x.score, x.segment
FROM (SELECT * FROM known UNION ALL SELECT * FROM fallback) x
JOIN videos v USING (video_id)
ORDER BY x.rank;
