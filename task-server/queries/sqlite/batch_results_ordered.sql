-- ?1 batch, ?2 from this index on, ?3 limit. Every task (finished or not) in input order; the
-- cursor of a row is its index + 1.
SELECT id, batch_index, state, answer, error, batch_index + 1 AS finish_seq FROM tasks
WHERE batch_id = ?1 AND batch_index >= ?2 ORDER BY batch_index LIMIT ?3
