-- Leases a worker id took in runs older than $3 (or with no run recorded): their processor
-- restarted, so nobody works on them. Locked like the reaper's read. $1 worker id, $2 token
-- subject, $3 incarnation, $4 limit.
SELECT id, lease_epoch, attempt, max_attempts, timeout_s, timeout_at, lease_worker, lost_leases
FROM tasks
WHERE state = 'leased' AND lease_worker = $1 AND lease_owner = $2
  AND (lease_incarnation IS NULL OR lease_incarnation COLLATE "C" < $3 COLLATE "C")
ORDER BY lease_deadline LIMIT $4
FOR UPDATE SKIP LOCKED
