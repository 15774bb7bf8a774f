-- $1 owner (NULL: everyone's), $2 limit. Oldest first.
SELECT id, owner, cron, timezone, task::text AS task, next_at, created_at, fired, last_task FROM schedules
WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id LIMIT $2
