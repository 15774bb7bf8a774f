-- $1 batch, $2 after this completion cursor, $3 limit (numbers come from number_results.sql).
SELECT id, batch_index, state, answer::text AS answer, error::text AS error, finish_seq FROM tasks
WHERE batch_id = $1 AND finish_seq > $2 ORDER BY finish_seq LIMIT $3
