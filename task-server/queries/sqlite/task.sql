SELECT id, seq, owner, package, version, function, state, priority, attempt, max_attempts, progress, answer, error, runtime_ms, created_at, finished_at, batch_id, lease_worker, leased_at, lease_deadline, lost_leases, args, kwargs, attempts
FROM tasks WHERE id = ?1
