-- $1 JSON [[task, sha256], …]: files that answers put into the arguments of tasks now queued.
-- Each is attached only when a task it waited for has it (an input it took or an output its
-- worker uploaded under its lease): an answer naming any other hash grants nothing.
INSERT INTO task_files (task, sha256)
SELECT (v->>0)::uuid, v->>1 FROM jsonb_array_elements($1::jsonb) v
WHERE EXISTS (SELECT 1 FROM task_deps d JOIN task_files tf ON tf.task = d.dep
              WHERE d.task = (v->>0)::uuid AND tf.sha256 = v->>1)
ON CONFLICT DO NOTHING
