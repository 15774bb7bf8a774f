-- ?1 JSON [[task, dep], …]: the edges of newly inserted waiting tasks; an edge to a task that
-- already finished (or no longer exists) is closed at once (migration 0014).
INSERT OR IGNORE INTO task_deps (task, dep, done)
SELECT j.value->>0, j.value->>1,
       NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = j.value->>1 AND t.state IN ('waiting', 'queued', 'leased'))
FROM json_each(?1) AS j
