-- Leases, behind the tasks ?13 (JSON array of ids this claim just leased), the tasks that follow
-- them: a waiting task whose one dependency is such a task, then those whose one dependency is
-- one of these, breadth first, ?7 in all. Only tasks nothing else decides first: no
-- memoization, caps or cost measures (those need the substituted arguments), due now, and
-- within the claim's capabilities. `follows` names the task each waits for. ?1–?12 as in claim.
-- The walk starts at the claimed tasks themselves (leased: the final `waiting` guard leaves them).
WITH RECURSIVE chain(id) AS (
  SELECT value FROM json_each(?13)
  UNION ALL
  SELECT t.id FROM chain c
    JOIN task_deps d ON d.dep = c.id
    JOIN tasks t ON t.id = d.task
  WHERE t.state = 'waiting' AND json_array_length(t.depends_on) = 1 AND t.memoize = 0 AND t.gated = 0
    AND t.cap_fn IS NULL AND t.cap_key IS NULL AND t.cost_by IS NULL AND t.available_at <= ?2
    AND t.req_gpus <= ?4 AND t.req_gpus >= ?12 AND t.req_memory_mb <= ?5
    AND (t.req_datasets IS NULL OR NOT EXISTS (
          SELECT 1 FROM json_each(t.req_datasets) AS x WHERE x.value NOT IN (SELECT value FROM json_each(?6))))
  LIMIT ?7 + json_array_length(?13))
UPDATE tasks SET state = 'leased', follows = depends_on ->> 0, lease_epoch = lease_epoch + 1,
       attempt = attempt + 1, lease_worker = ?1, lease_owner = ?9, lease_incarnation = ?10,
       lease_request = ?11, leased_at = ?2, progress = NULL,
       timeout_at = CASE WHEN timeout_s IS NULL THEN NULL ELSE ?2 + timeout_s * 1000 + ?8 END,
       lease_deadline = CASE WHEN timeout_s IS NULL THEN ?3 ELSE min(?3, ?2 + timeout_s * 1000 + ?8) END
WHERE id IN (SELECT id FROM chain) AND state = 'waiting'
RETURNING id, package, version, function, args, kwargs, timeout_s, attempt, max_attempts, priority, seq,
          lease_epoch, lease_deadline, req_gpus, req_memory_mb, req_datasets, cost_by, cost0, cost1, cost2,
          cap_fn, cap_key, has_dependents, follows
