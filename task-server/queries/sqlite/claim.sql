-- Leases up to ?7 ready tasks in priority, then fair-share turn (fair_tag), then FIFO, order.
-- ?1 worker id, ?2 now, ?3 lease deadline, ?4 GPUs free, ?5 memory per task (MiB), ?6 datasets
-- held (JSON array), ?7 limit, ?8 timeout grace (ms), ?9 token subject, ?10 incarnation, ?11 request id,
-- ?12 GPUs a task must need at least (1: a GPU slot that leaves CPU tasks to idle CPU slots).
UPDATE tasks SET state = 'leased', lease_epoch = lease_epoch + 1, attempt = attempt + 1,
       lease_worker = ?1, lease_owner = ?9, lease_incarnation = ?10, lease_request = ?11, leased_at = ?2, progress = NULL,
       timeout_at = CASE WHEN timeout_s IS NULL THEN NULL ELSE ?2 + timeout_s * 1000 + ?8 END,
       lease_deadline = CASE WHEN timeout_s IS NULL THEN ?3 ELSE min(?3, ?2 + timeout_s * 1000 + ?8) END
WHERE seq IN (
    SELECT seq FROM tasks
    WHERE state = 'queued' AND gated = 0 AND available_at <= ?2 AND req_gpus <= ?4 AND req_gpus >= ?12 AND req_memory_mb <= ?5
      AND (req_datasets IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(tasks.req_datasets) AS d
            WHERE d.value NOT IN (SELECT value FROM json_each(?6))))
    ORDER BY priority DESC, fair_tag, seq
    LIMIT ?7)
RETURNING id, package, version, function, args, kwargs, timeout_s, attempt, max_attempts, priority, seq,
          lease_epoch, lease_deadline, req_gpus, req_memory_mb, req_datasets, cost_by, cost0, cost1, cost2, cap_fn, cap_key, has_dependents, follows
