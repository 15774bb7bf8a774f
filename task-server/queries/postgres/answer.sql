-- Applies answers to the leases their senders hold. $1 now, $2 retry delays (JSON array, ms, by
-- attempt - 1: the policy is RetryPolicy in store/core.rs), $3 unused here (SQLite numbers
-- completions itself; this store takes `finish_order` from a sequence), $4 default result TTL (s),
-- $5 answers (JSON, see core::answer_json).
-- A retryable error with attempts left goes back to the queue after its delay (a chained task,
-- `follows`, back to `waiting`: its arguments still hold references); anything else ends.
WITH a AS (SELECT (v->>'id')::uuid AS id, (v->>'epoch')::bigint AS epoch, v->>'kind' AS kind,
                  v->>'worker' AS worker, v->>'owner' AS owner,
                  v->'answer' AS answer, v->'error' AS error, (v->>'runtime_ms')::float8 AS runtime_ms
           FROM jsonb_array_elements($5::jsonb) v)
UPDATE tasks t SET
  state = CASE WHEN a.kind = 'ok' THEN 'succeeded'
               WHEN a.kind = 'fatal' OR t.attempt >= t.max_attempts THEN 'failed'
               WHEN t.follows IS NOT NULL THEN 'waiting'
               ELSE 'queued' END,
  follows = NULL,
  answer = CASE WHEN a.kind = 'ok' THEN a.answer END,
  error = CASE WHEN a.kind = 'ok' THEN NULL ELSE a.error END,
  runtime_ms = COALESCE(a.runtime_ms, ($1 - t.leased_at)::float8),
  answered_epoch = t.lease_epoch,
  progress = CASE WHEN a.kind = 'ok' THEN 100.0 ELSE t.progress END,
  available_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts
                      THEN $1 + ($2::jsonb ->> LEAST(t.attempt - 1, jsonb_array_length($2::jsonb) - 1)::int)::bigint
                      ELSE t.available_at END,
  finished_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL ELSE $1 END,
  finish_order = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL ELSE nextval('finish_order_counter') END,
  expires_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL
                    ELSE $1 + COALESCE(t.ttl_s, $4) * 1000 END,
  attempts = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts
                  THEN COALESCE(t.attempts, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
                    'attempt', t.attempt, 'worker_id', t.lease_worker, 'started_at', t.leased_at,
                    'ended_at', $1::bigint, 'error', a.error))
                  ELSE t.attempts END,
  lease_deadline = NULL, timeout_at = NULL
FROM a WHERE t.id = a.id AND t.state = 'leased' AND t.lease_epoch = COALESCE(a.epoch, t.lease_epoch)
  AND (a.worker IS NULL OR t.lease_worker = a.worker) AND COALESCE(t.lease_owner, a.owner) = a.owner
RETURNING t.id, t.state, t.batch_id, t.package, t.version, t.function, t.runtime_ms, t.attempt, t.progress,
          t.answer::text AS answer, t.error::text AS error, t.cost_by,
          t.cost0, t.cost1, t.cost2, t.has_dependents, t.cap_fn, t.cap_key
