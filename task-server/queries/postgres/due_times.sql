-- When queued tasks become due in ($1, $2], earliest first, at most $3 distinct times (the
-- reaper wakes waiting processors at each: a rate's start slots are tens of ms apart).
SELECT DISTINCT available_at FROM tasks
WHERE state = 'queued' AND available_at > $1 AND available_at <= $2
ORDER BY available_at LIMIT $3
