-- Leases past their deadline, oldest first, locked so replicas reaping at once skip each other's.
-- $1 now, $2 limit.
SELECT id, lease_epoch, attempt, max_attempts, timeout_s, timeout_at, lease_worker, lost_leases
FROM tasks
WHERE state = 'leased' AND lease_deadline <= $1 ORDER BY lease_deadline LIMIT $2
FOR UPDATE SKIP LOCKED
