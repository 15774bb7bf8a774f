-- Inserts the tasks of $1 (JSON array of store::NewTask) for owner $2 at $3, in batch $4 (NULL:
-- none; a task's batch_index is its position). Used inside submit_one.sql and submit_batch.sql.
-- Fair share: the tasks take consecutive fair_tags from max(the head of priority $5's queue, one
-- past the owner's last unstarted tag) ($5: the first task's priority; migration 0011).
INSERT INTO tasks (id, owner, package, version, function, args, kwargs, state, priority, max_attempts,
                   timeout_s, available_at, created_at, ttl_s, idempotency_key, request_hash, batch_id,
                   batch_index, args_hash, memoize, req_gpus, req_memory_mb, req_datasets, cost_by,
                   cost0, cost1, cost2, depends_on, cost_at, fair_tag,
                   cap_fn, cap_key, gated)
SELECT (v->>'id')::uuid, $2, v->>'package', v->>'version', v->>'function', v->'args', v->'kwargs', v->>'state',
       (v->>'priority')::bigint, (v->>'max_attempts')::bigint, (v->>'timeout_s')::bigint, COALESCE((v->>'not_before')::bigint, $3), $3,
       (v->>'ttl_s')::bigint, v->>'idempotency_key', v->>'request_hash', $4::uuid,
       CASE WHEN $4::uuid IS NULL THEN NULL ELSE e.n - 1 END, v->>'args_hash', (v->>'memoize')::boolean,
       (v->>'req_gpus')::bigint, (v->>'req_memory_mb')::bigint, v->'req_datasets', v->'cost'->>'by',
       (v->'cost'->'x'->>0)::float8, (v->'cost'->'x'->>1)::float8, (v->'cost'->'x'->>2)::float8, v->'depends_on', v->'cost_at',
       GREATEST(COALESCE((SELECT q.fair_tag FROM tasks q WHERE q.state = 'queued' AND q.priority = $5
                          ORDER BY q.priority DESC, q.fair_tag, q.seq LIMIT 1), 0),
                COALESCE((SELECT o.fair_tag + 1 FROM tasks o WHERE o.owner = $2 AND o.state IN ('waiting', 'queued')
                          ORDER BY o.fair_tag DESC LIMIT 1), 0)) + e.n - 1,
       v->>'cap_fn', v->>'cap_key', (v->>'cap_fn' IS NOT NULL OR v->>'cap_key' IS NOT NULL)
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(v, n)
