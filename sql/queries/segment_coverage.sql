-- How the published run served users: users and rows per segment (hot = views, warm = domains only,
-- cold = popularity fallback), and the share of active videos that appear in any list.
SELECT segment, count(DISTINCT user_id) AS users, count(*) AS rows,
       round(count(DISTINCT video_id)::numeric / (SELECT count(*) FROM videos WHERE is_active IS NOT FALSE), 3)
           AS active_video_coverage
FROM rec.user_recommendations_current
GROUP BY segment
ORDER BY segment;
