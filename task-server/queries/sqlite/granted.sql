-- The leases one lease request took that are still current (sent again when its answer was lost).
-- ?1 worker id, ?2 token subject, ?3 request id.
SELECT id, package, version, function, args, kwargs, timeout_s, attempt, max_attempts, priority, seq,
       lease_epoch, lease_deadline, req_gpus, req_memory_mb, req_datasets, cost_by,
       cost0, cost1, cost2, follows
FROM tasks
WHERE state = 'leased' AND lease_worker = ?1 AND lease_owner = ?2 AND lease_request = ?3
