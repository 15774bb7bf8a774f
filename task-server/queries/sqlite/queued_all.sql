-- Queued tasks per function and capability class (needs a GPU or not), with the count, sum and
-- range of each cost slot's measures (cost.rs; the columns are read by rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count(cost0) AS n0, total(cost0) AS s0, max(cost0) AS hi0, min(cost0) AS lo0,
       count(cost1) AS n1, total(cost1) AS s1, max(cost1) AS hi1, min(cost1) AS lo1,
       count(cost2) AS n2, total(cost2) AS s2, max(cost2) AS hi2, min(cost2) AS lo2
FROM tasks
WHERE state = 'queued'
GROUP BY package, version, function, req_gpus > 0
