-- $1 JSON [[task, dep], …]: the edges of newly inserted waiting tasks.
INSERT INTO task_deps (task, dep)
SELECT (v->>0)::uuid, (v->>1)::uuid FROM jsonb_array_elements($1::jsonb) v ON CONFLICT DO NOTHING
