-- Applies what store/core.rs decided for expired leases. $1 now, $2 unused here (completion order
-- comes from a sequence), $3 default result TTL (s), $4 plan (JSON [{id, epoch, state, error,
-- available_at, lost}]).
WITH p AS (SELECT (v->>'id')::uuid AS id, (v->>'epoch')::bigint AS epoch, v->>'state' AS state,
                  v->'error' AS error, (v->>'available_at')::bigint AS available_at,
                  (v->>'lost')::int AS lost
           FROM jsonb_array_elements($4::jsonb) v)
UPDATE tasks t SET state = CASE WHEN p.state = 'queued' AND t.follows IS NOT NULL THEN 'waiting' ELSE p.state END,
  follows = NULL, error = p.error, lost_leases = t.lost_leases + p.lost,
  available_at = COALESCE(p.available_at, t.available_at),
  finished_at = CASE WHEN p.state = 'queued' THEN NULL ELSE $1 END,
  finish_order = CASE WHEN p.state = 'queued' THEN NULL ELSE nextval('finish_order_counter') END,
  expires_at = CASE WHEN p.state = 'queued' THEN NULL ELSE $1 + COALESCE(t.ttl_s, $3) * 1000 END,
  attempts = CASE WHEN p.state = 'queued'
                  THEN COALESCE(t.attempts, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                    'attempt', t.attempt, 'worker_id', t.lease_worker, 'started_at', t.leased_at,
                    'ended_at', $1::bigint, 'error', p.error))
                  ELSE t.attempts END,
  lease_deadline = NULL, timeout_at = NULL
FROM p WHERE t.id = p.id AND t.state = 'leased' AND t.lease_epoch = p.epoch
RETURNING t.id, t.state, t.batch_id
