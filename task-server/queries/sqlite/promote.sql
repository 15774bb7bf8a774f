-- Queues waiting tasks whose dependencies all succeeded, with their references replaced.
-- ?1 JSON [{id, args, kwargs, args_hash, x: [cost measures]}] (store/core.rs promote_json).
WITH p AS MATERIALIZED (
  SELECT j.value->>'id' AS id, j.value->'args' AS args, j.value->'kwargs' AS kwargs,
         j.value->>'args_hash' AS args_hash, j.value->'x'->>0 AS c0, j.value->'x'->>1 AS c1,
         j.value->'x'->>2 AS c2
  FROM json_each(?1) AS j)
UPDATE tasks SET state = 'queued', args = p.args, kwargs = p.kwargs, args_hash = p.args_hash,
  cost0 = p.c0, cost1 = p.c1, cost2 = p.c2
FROM p WHERE tasks.id = p.id AND tasks.state = 'waiting'
RETURNING tasks.id, tasks.cap_fn, tasks.cap_key
