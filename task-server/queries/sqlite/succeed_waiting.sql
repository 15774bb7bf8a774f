-- Finishes waiting tasks whose substituted call already succeeded (memoized) with that answer,
-- without running them. ?1 now, ?2 first completion number of this statement, ?3 default result
-- TTL (s), ?4 JSON [{id, args, kwargs, args_hash, answer}].
WITH s AS MATERIALIZED (
  SELECT j.key AS k, j.value->>'id' AS id, j.value->'args' AS args, j.value->'kwargs' AS kwargs,
         j.value->>'args_hash' AS args_hash, j.value->'answer' AS answer FROM json_each(?4) AS j)
UPDATE tasks SET state = 'succeeded', args = s.args, kwargs = s.kwargs, args_hash = s.args_hash,
  answer = s.answer, progress = 100.0, runtime_ms = 0, finished_at = ?1, finish_seq = ?2 + s.k,
  expires_at = ?1 + coalesce(tasks.ttl_s, ?3) * 1000
FROM s WHERE tasks.id = s.id AND tasks.state = 'waiting'
RETURNING tasks.id, tasks.state, tasks.batch_id
