-- ?1 JSON [[task, sha256], …]: files that answers put into the arguments of tasks now queued.
-- Each is attached only when a task it waited for has it (an input it took or an output its
-- worker uploaded under its lease): an answer naming any other hash grants nothing.
INSERT OR IGNORE INTO task_files (task, sha256)
SELECT j.value->>0, j.value->>1 FROM json_each(?1) AS j
WHERE EXISTS (SELECT 1 FROM task_deps d JOIN task_files tf ON tf.task = d.dep
              WHERE d.task = j.value->>0 AND tf.sha256 = j.value->>1)
