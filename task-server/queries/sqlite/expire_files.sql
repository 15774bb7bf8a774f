-- ?1 cutoff (ms), ?2 limit. Removes up to ?2 copies uploaded before the cutoff whose blob no
-- task takes (one statement: a task attached meanwhile keeps them); their keys, to delete.
DELETE FROM files WHERE (sha256, owner) IN (
  SELECT f.sha256, f.owner FROM files f
  WHERE f.created_at < ?1 AND NOT EXISTS (SELECT 1 FROM task_files tf WHERE tf.sha256 = f.sha256)
  LIMIT ?2)
RETURNING key
