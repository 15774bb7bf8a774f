-- ?1 now, ?2 limit. Schedules whose next tick has come, earliest first.
SELECT id, owner, cron, timezone, task, next_at, created_at, fired, last_task FROM schedules
WHERE next_at <= ?1 ORDER BY next_at LIMIT ?2
