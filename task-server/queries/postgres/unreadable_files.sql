-- $1 owner, $2 JSON array of sha256. Those the owner may not name in a task: neither its own
-- upload nor a file one of its tasks takes.
SELECT s FROM jsonb_array_elements_text($2::jsonb) AS s
WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.sha256 = s AND f.owner = $1)
  AND NOT EXISTS (SELECT 1 FROM task_files tf JOIN tasks t ON t.id = tf.task
                  WHERE tf.sha256 = s AND t.owner = $1)
