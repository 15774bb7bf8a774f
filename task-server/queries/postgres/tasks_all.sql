-- $1 state (NULL: any), $2 before this seq (NULL: newest), $3 limit.
SELECT id, seq, owner, package, version, function, state, priority, attempt, max_attempts, progress, answer::text AS answer, error::text AS error, runtime_ms, created_at, finished_at, batch_id, lease_worker, leased_at, lease_deadline, lost_leases
FROM tasks WHERE ($1::text IS NULL OR state = $1) AND ($2::bigint IS NULL OR seq < $2)
ORDER BY seq DESC LIMIT $3
