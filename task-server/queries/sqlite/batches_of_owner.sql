-- ?1 owner, ?2 limit: newest first.
SELECT id, owner, total, created_at FROM batches WHERE owner = ?1 ORDER BY created_at DESC LIMIT ?2
