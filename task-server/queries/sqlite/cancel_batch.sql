-- Cancels every unfinished task of a batch. ?1 now, ?2 first completion number of this
-- statement (one per task, in input order), ?3 default result TTL (s), ?4 error (JSON), ?5 batch.
WITH c AS MATERIALIZED (
  SELECT id, row_number() OVER (ORDER BY batch_index) - 1 AS k FROM tasks
  WHERE batch_id = ?5 AND state IN ('waiting', 'queued', 'leased'))
UPDATE tasks SET state = 'cancelled', finished_at = ?1, finish_seq = ?2 + c.k,
       expires_at = ?1 + coalesce(tasks.ttl_s, ?3) * 1000, error = ?4
FROM c WHERE tasks.id = c.id AND tasks.state IN ('waiting', 'queued', 'leased')
RETURNING tasks.id, tasks.state, tasks.batch_id
