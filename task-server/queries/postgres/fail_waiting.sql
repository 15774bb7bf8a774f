-- Fails waiting tasks that cannot run (a dependency did not succeed). $1 now, $2 unused here
-- (completion order comes from a sequence), $3 default result TTL (s), $4 JSON [{id, error}].
WITH f AS (SELECT (v->>'id')::uuid AS id, v->'error' AS error FROM jsonb_array_elements($4::jsonb) v)
UPDATE tasks t SET state = 'failed', error = f.error, finished_at = $1,
  finish_order = nextval('finish_order_counter'), expires_at = $1 + COALESCE(t.ttl_s, $3) * 1000
FROM f WHERE t.id = f.id AND t.state = 'waiting'
RETURNING t.id, t.state, t.batch_id
