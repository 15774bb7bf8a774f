-- Queued tasks that run before (or are) the task at priority ?1 and seq ?2, per function and
-- capability class, with the count, sum and range of each cost slot's measures (rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count(CAST(cost ->> '$.x[0]' AS REAL)) AS n0, total(CAST(cost ->> '$.x[0]' AS REAL)) AS s0, max(CAST(cost ->> '$.x[0]' AS REAL)) AS hi0, min(CAST(cost ->> '$.x[0]' AS REAL)) AS lo0,
       count(CAST(cost ->> '$.x[1]' AS REAL)) AS n1, total(CAST(cost ->> '$.x[1]' AS REAL)) AS s1, max(CAST(cost ->> '$.x[1]' AS REAL)) AS hi1, min(CAST(cost ->> '$.x[1]' AS REAL)) AS lo1,
       count(CAST(cost ->> '$.x[2]' AS REAL)) AS n2, total(CAST(cost ->> '$.x[2]' AS REAL)) AS s2, max(CAST(cost ->> '$.x[2]' AS REAL)) AS hi2, min(CAST(cost ->> '$.x[2]' AS REAL)) AS lo2
FROM tasks
WHERE state = 'queued' AND (priority > ?1 OR (priority = ?1 AND seq <= ?2))
GROUP BY package, version, function, req_gpus > 0
