SELECT id, seq, owner, package, version, function, state, priority, attempt, max_attempts, progress, answer::text AS answer, error::text AS error, runtime_ms, created_at, finished_at, batch_id, lease_worker, leased_at, lease_deadline, lost_leases, args::text AS args, kwargs::text AS kwargs, attempts::text AS attempts
FROM tasks WHERE id = $1
