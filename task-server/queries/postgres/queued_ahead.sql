-- Queued tasks that run before (or are) the task (claim order: priority, fair_tag, seq) at priority $1 and seq $2, per function and
-- capability class, with the count, sum and range of each cost slot's measures (rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count(cost0) AS n0, COALESCE(sum(cost0), 0) AS s0, max(cost0) AS hi0, min(cost0) AS lo0,
       count(cost1) AS n1, COALESCE(sum(cost1), 0) AS s1, max(cost1) AS hi1, min(cost1) AS lo1,
       count(cost2) AS n2, COALESCE(sum(cost2), 0) AS s2, max(cost2) AS hi2, min(cost2) AS lo2
FROM tasks
WHERE state = 'queued' AND (priority > $1 OR (priority = $1 AND (fair_tag, seq) <= (SELECT fair_tag, seq FROM tasks WHERE seq = $2)))
GROUP BY package, version, function, req_gpus > 0
