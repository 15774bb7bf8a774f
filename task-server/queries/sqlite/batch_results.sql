-- ?1 batch, ?2 after this completion cursor, ?3 limit.
SELECT id, batch_index, state, answer, error, finish_seq FROM tasks
WHERE batch_id = ?1 AND finish_seq > ?2 ORDER BY finish_seq LIMIT ?3
