-- Erasure requests, newest first: done (with rows or files removed per place) or waiting (and why).
-- File one with: INSERT INTO rec.erasure_requests (user_id) VALUES (123);  (role rec_privacy may)
SELECT request_id, user_id, requested_at, requested_by, done_at, attempts, last_error, removed
FROM rec.erasure_requests
ORDER BY requested_at DESC, request_id DESC;
