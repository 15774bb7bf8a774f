-- ?1 owner, ?2 JSON array of sha256. Those the owner may not name in a task: neither its own
-- upload nor a file one of its tasks takes.
SELECT j.value FROM json_each(?2) AS j
WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = j.value AND f.owner = ?1)
  AND NOT EXISTS (SELECT 1 FROM task_files tf JOIN tasks t ON t.id = tf.task
                  WHERE tf.sha256 = j.value AND t.owner = ?1)
