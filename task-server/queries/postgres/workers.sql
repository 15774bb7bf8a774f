-- Processors seen since $1, with the leases each holds now.
SELECT w.worker_id, w.owner, w.slots, w.capabilities::text AS capabilities, w.first_seen, w.last_seen,
  w.dispatch_ms, w.speed,
  (SELECT count(*) FROM tasks t WHERE t.state = 'leased' AND t.lease_worker = w.worker_id) AS running
FROM workers w WHERE w.last_seen >= $1 ORDER BY w.worker_id
