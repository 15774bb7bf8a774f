-- ?1 JSON [[task, sha256], …]: the files newly inserted tasks take.
INSERT OR IGNORE INTO task_files (task, sha256)
SELECT j.value->>0, j.value->>1 FROM json_each(?1) AS j
