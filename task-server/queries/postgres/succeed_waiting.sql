-- Finishes waiting tasks whose substituted call already succeeded (memoized) with that answer,
-- without running them. $1 now, $2 unused here (completion order comes from a sequence), $3
-- default result TTL (s), $4 JSON [{id, args, kwargs, args_hash, answer}].
WITH s AS (SELECT (v->>'id')::uuid AS id, v->'args' AS args, v->'kwargs' AS kwargs,
                  v->>'args_hash' AS args_hash, v->'answer' AS answer
           FROM jsonb_array_elements($4::jsonb) v)
UPDATE tasks t SET state = 'succeeded', args = s.args, kwargs = s.kwargs, args_hash = s.args_hash,
  answer = s.answer, progress = 100.0, runtime_ms = 0, finished_at = $1,
  finish_order = nextval('finish_order_counter'), expires_at = $1 + COALESCE(t.ttl_s, $3) * 1000
FROM s WHERE t.id = s.id AND t.state = 'waiting'
RETURNING t.id, t.state, t.batch_id
