-- Followed by one `(?,…)` group per task (store/sqlite/insert.rs binds them).
INSERT INTO tasks (id, owner, package, version, function, args, kwargs, state, priority, max_attempts,
                   timeout_s, available_at, created_at, ttl_s, idempotency_key, request_hash, batch_id,
                   batch_index, args_hash, memoize, req_gpus, req_memory_mb, req_datasets, cost_by,
                   cost0, cost1, cost2, depends_on, cost_at, fair_tag,
                   cap_fn, cap_key, gated)
VALUES
