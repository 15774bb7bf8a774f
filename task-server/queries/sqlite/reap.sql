-- Applies what store/core.rs decided for expired leases. ?1 now, ?2 first completion number,
-- ?3 default result TTL (s), ?4 plan (JSON [{id, epoch, state, error, available_at, lost}]).
WITH p AS MATERIALIZED (
  SELECT j.key AS k, j.value->>'id' AS id, j.value->>'epoch' AS epoch, j.value->>'state' AS state,
         j.value->'error' AS error, j.value->>'available_at' AS available_at,
         j.value->>'lost' AS lost
  FROM json_each(?4) AS j)
UPDATE tasks SET state = CASE WHEN p.state = 'queued' AND tasks.follows IS NOT NULL THEN 'waiting' ELSE p.state END,
  follows = NULL, error = p.error, lost_leases = tasks.lost_leases + p.lost,
  available_at = coalesce(p.available_at, tasks.available_at),
  finished_at = CASE WHEN p.state = 'queued' THEN NULL ELSE ?1 END,
  finish_seq = CASE WHEN p.state = 'queued' THEN NULL ELSE ?2 + p.k END,
  expires_at = CASE WHEN p.state = 'queued' THEN NULL ELSE ?1 + coalesce(tasks.ttl_s, ?3) * 1000 END,
  attempts = CASE WHEN p.state = 'queued'
                  THEN json_insert(coalesce(tasks.attempts, '[]'), '$[#]', json_object(
                    'attempt', tasks.attempt, 'worker_id', tasks.lease_worker, 'started_at', tasks.leased_at,
                    'ended_at', ?1, 'error', json(p.error)))
                  ELSE tasks.attempts END,
  lease_deadline = NULL, timeout_at = NULL
FROM p
WHERE tasks.id = p.id AND tasks.state = 'leased' AND tasks.lease_epoch = p.epoch
RETURNING tasks.id, tasks.state, tasks.batch_id
