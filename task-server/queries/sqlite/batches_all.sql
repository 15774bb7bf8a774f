-- ?1 limit: newest first.
SELECT id, owner, total, created_at FROM batches ORDER BY created_at DESC LIMIT ?1
