-- ?1 JSON [[task, dep], …]: the edges of newly inserted waiting tasks.
INSERT OR IGNORE INTO task_deps (task, dep) SELECT j.value->>0, j.value->>1 FROM json_each(?1) AS j
