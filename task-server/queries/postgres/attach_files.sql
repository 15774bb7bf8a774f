-- $1 JSON [[task, sha256], …]: the files newly inserted tasks take.
INSERT INTO task_files (task, sha256)
SELECT (v->>0)::uuid, v->>1 FROM jsonb_array_elements($1::jsonb) v ON CONFLICT DO NOTHING
