-- $1 id, $2 owner, $3 cron, $4 time zone, $5 task (JSON), $6 first tick, $7 now.
INSERT INTO schedules (id, owner, cron, timezone, task, next_at, created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
