-- Fails waiting tasks that cannot run (a dependency did not succeed). ?1 now, ?2 first
-- completion number of this statement, ?3 default result TTL (s), ?4 JSON [{id, error}].
WITH f AS MATERIALIZED (
  SELECT j.key AS k, j.value->>'id' AS id, j.value->'error' AS error FROM json_each(?4) AS j)
UPDATE tasks SET state = 'failed', error = f.error, finished_at = ?1, finish_seq = ?2 + f.k,
  expires_at = ?1 + coalesce(tasks.ttl_s, ?3) * 1000
FROM f WHERE tasks.id = f.id AND tasks.state = 'waiting'
RETURNING tasks.id, tasks.state, tasks.batch_id
