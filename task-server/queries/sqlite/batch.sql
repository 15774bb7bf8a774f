SELECT id, owner, total, created_at FROM batches WHERE id = ?1
