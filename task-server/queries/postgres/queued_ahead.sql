-- Queued tasks that run before (or are) the task at priority $1 and seq $2, per function and
-- capability class, with the count, sum and range of each cost slot's measures (rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count((cost->'x'->>0)::float8) AS n0, COALESCE(sum((cost->'x'->>0)::float8), 0) AS s0, max((cost->'x'->>0)::float8) AS hi0, min((cost->'x'->>0)::float8) AS lo0,
       count((cost->'x'->>1)::float8) AS n1, COALESCE(sum((cost->'x'->>1)::float8), 0) AS s1, max((cost->'x'->>1)::float8) AS hi1, min((cost->'x'->>1)::float8) AS lo1,
       count((cost->'x'->>2)::float8) AS n2, COALESCE(sum((cost->'x'->>2)::float8), 0) AS s2, max((cost->'x'->>2)::float8) AS hi2, min((cost->'x'->>2)::float8) AS lo2
FROM tasks
WHERE state = 'queued' AND (priority > $1 OR (priority = $1 AND seq <= $2))
GROUP BY package, version, function, req_gpus > 0
