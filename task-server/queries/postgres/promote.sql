-- Queues waiting tasks whose dependencies all succeeded, with their references replaced.
-- $1 JSON [{id, args, kwargs, args_hash, x: [cost measures]}] (store/core.rs promote_json).
WITH p AS (SELECT (v->>'id')::uuid AS id, v->'args' AS args, v->'kwargs' AS kwargs,
                  v->>'args_hash' AS args_hash, (v->'x'->>0)::float8 AS c0,
                  (v->'x'->>1)::float8 AS c1, (v->'x'->>2)::float8 AS c2
           FROM jsonb_array_elements($1::jsonb) v)
UPDATE tasks t SET state = 'queued', args = p.args, kwargs = p.kwargs, args_hash = p.args_hash,
  cost0 = p.c0, cost1 = p.c1, cost2 = p.c2
FROM p WHERE t.id = p.id AND t.state = 'waiting'
RETURNING t.id, t.cap_fn, t.cap_key
