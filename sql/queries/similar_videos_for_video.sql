-- Videos similar to one video, best first, from the published run.
-- Parameter $1: video_id.  In psql: PREPARE similar(bigint) AS <this query>; EXECUTE similar(107);
SELECT s.rank, s.similar_video_id, v.title, s.score
FROM rec.similar_videos_current s
JOIN videos v ON v.video_id = s.similar_video_id
WHERE s.video_id = $1
ORDER BY s.rank;
