-- ?1 sha256, ?2 who reads ('admin', 'user', 'worker'), ?3 its token subject. A copy of the
-- blob it may read: users their own uploads and the files their tasks take; workers the files
-- of the tasks they hold leases on; admins any. Key and size.
SELECT key, size FROM files f
WHERE f.sha256 = ?1 AND (
  ?2 = 'admin'
  OR (?2 = 'user' AND (f.owner = ?3 OR EXISTS (
        SELECT 1 FROM task_files tf JOIN tasks t ON t.id = tf.task
        WHERE tf.sha256 = ?1 AND t.owner = ?3)))
  OR (?2 = 'worker' AND EXISTS (
        SELECT 1 FROM task_files tf JOIN tasks t ON t.id = tf.task
        WHERE tf.sha256 = ?1 AND t.state = 'leased' AND t.lease_owner = ?3)))
ORDER BY f.created_at DESC LIMIT 1
