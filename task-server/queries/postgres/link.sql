-- $1 JSON [[task, dep], …]: the edges of newly inserted waiting tasks; an edge to a task that
-- already finished (or no longer exists) is closed at once (migration 0014).
INSERT INTO task_deps (task, dep, done)
SELECT (v->>0)::uuid, (v->>1)::uuid,
       NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = (v->>1)::uuid AND t.state IN ('waiting', 'queued', 'leased'))
FROM jsonb_array_elements($1::jsonb) v ON CONFLICT DO NOTHING
