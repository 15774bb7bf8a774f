-- Queued tasks per function and capability class (needs a GPU or not), with the count, sum and
-- range of each cost slot's measures (cost.rs; the columns are read by rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count(CAST(cost ->> '$.x[0]' AS REAL)) AS n0, total(CAST(cost ->> '$.x[0]' AS REAL)) AS s0, max(CAST(cost ->> '$.x[0]' AS REAL)) AS hi0, min(CAST(cost ->> '$.x[0]' AS REAL)) AS lo0,
       count(CAST(cost ->> '$.x[1]' AS REAL)) AS n1, total(CAST(cost ->> '$.x[1]' AS REAL)) AS s1, max(CAST(cost ->> '$.x[1]' AS REAL)) AS hi1, min(CAST(cost ->> '$.x[1]' AS REAL)) AS lo1,
       count(CAST(cost ->> '$.x[2]' AS REAL)) AS n2, total(CAST(cost ->> '$.x[2]' AS REAL)) AS s2, max(CAST(cost ->> '$.x[2]' AS REAL)) AS hi2, min(CAST(cost ->> '$.x[2]' AS REAL)) AS lo2
FROM tasks
WHERE state = 'queued'
GROUP BY package, version, function, req_gpus > 0
