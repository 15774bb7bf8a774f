SELECT id, seq, owner, package, version, function, state, priority, attempt, max_attempts, progress, answer, error, runtime_ms, created_at, finished_at, batch_id
FROM tasks WHERE id = ?1
