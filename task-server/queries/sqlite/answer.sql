-- Applies answers to the leases their senders hold. ?1 now, ?2 retry delays (JSON array, ms, by
-- attempt - 1: the policy is RetryPolicy in store/core.rs), ?3 first completion number of this
-- statement, ?4 default result TTL (s), ?5 answers (JSON, see core::answer_json).
-- A retryable error with attempts left goes back to the queue after its delay (a chained task,
-- `follows`, back to `waiting`: its arguments still hold references); anything else ends.
WITH a AS MATERIALIZED (
  SELECT j.key AS k, j.value->>'id' AS id, j.value->>'epoch' AS epoch, j.value->>'kind' AS kind,
         j.value->>'worker' AS worker, j.value->>'owner' AS owner,
         j.value->'answer' AS answer, j.value->'error' AS error, j.value->>'runtime_ms' AS runtime_ms
  FROM json_each(?5) AS j)
UPDATE tasks SET
  state = CASE WHEN a.kind = 'ok' THEN 'succeeded'
               WHEN a.kind = 'fatal' OR tasks.attempt >= tasks.max_attempts THEN 'failed'
               WHEN tasks.follows IS NOT NULL THEN 'waiting'
               ELSE 'queued' END,
  follows = NULL,
  answer = CASE WHEN a.kind = 'ok' THEN a.answer END,
  error = CASE WHEN a.kind = 'ok' THEN NULL ELSE a.error END,
  runtime_ms = coalesce(a.runtime_ms, ?1 - tasks.leased_at),
  answered_epoch = tasks.lease_epoch,
  progress = CASE WHEN a.kind = 'ok' THEN 100.0 ELSE tasks.progress END,
  available_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts
                      THEN ?1 + (?2 ->> min(tasks.attempt - 1, json_array_length(?2) - 1)) ELSE tasks.available_at END,
  finished_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL ELSE ?1 END,
  finish_seq = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL ELSE ?3 + a.k END,
  expires_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL
                    ELSE ?1 + coalesce(tasks.ttl_s, ?4) * 1000 END,
  attempts = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts
                  THEN json_insert(coalesce(tasks.attempts, '[]'), '$[#]', json_object(
                    'attempt', tasks.attempt, 'worker_id', tasks.lease_worker, 'started_at', tasks.leased_at,
                    'ended_at', ?1, 'error', json(a.error)))
                  ELSE tasks.attempts END,
  lease_deadline = NULL, timeout_at = NULL
FROM a
WHERE tasks.id = a.id AND tasks.state = 'leased' AND tasks.lease_epoch = coalesce(a.epoch, tasks.lease_epoch)
  AND (a.worker IS NULL OR tasks.lease_worker = a.worker) AND coalesce(tasks.lease_owner, a.owner) = a.owner
RETURNING tasks.id, tasks.state, tasks.batch_id, tasks.package, tasks.version, tasks.function, tasks.runtime_ms,
          tasks.attempt, tasks.progress, tasks.answer, tasks.error, tasks.cost_by,
          tasks.cost0, tasks.cost1, tasks.cost2, tasks.has_dependents, tasks.cap_fn, tasks.cap_key
