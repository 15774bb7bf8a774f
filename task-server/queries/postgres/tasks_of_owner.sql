-- $1 owner, $2 state (NULL: any), $3 before this seq (NULL: newest), $4 limit.
SELECT id, seq, owner, package, version, function, state, priority, attempt, max_attempts, progress, answer::text AS answer, error::text AS error, runtime_ms, created_at, finished_at, batch_id, lease_worker, leased_at, lease_deadline, lost_leases
FROM tasks WHERE owner = $1 AND ($2::text IS NULL OR state = $2) AND ($3::bigint IS NULL OR seq < $3)
ORDER BY seq DESC LIMIT $4
