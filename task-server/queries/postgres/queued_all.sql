-- Queued tasks per function and capability class (needs a GPU or not), with the count, sum and
-- range of each cost slot's measures (cost.rs; the columns are read by rows::QueuedRow).
SELECT package, version, function, req_gpus > 0 AS gpu, count(*) AS n,
       count((cost->'x'->>0)::float8) AS n0, COALESCE(sum((cost->'x'->>0)::float8), 0) AS s0, max((cost->'x'->>0)::float8) AS hi0, min((cost->'x'->>0)::float8) AS lo0,
       count((cost->'x'->>1)::float8) AS n1, COALESCE(sum((cost->'x'->>1)::float8), 0) AS s1, max((cost->'x'->>1)::float8) AS hi1, min((cost->'x'->>1)::float8) AS lo1,
       count((cost->'x'->>2)::float8) AS n2, COALESCE(sum((cost->'x'->>2)::float8), 0) AS s2, max((cost->'x'->>2)::float8) AS hi2, min((cost->'x'->>2)::float8) AS lo2
FROM tasks
WHERE state = 'queued'
GROUP BY package, version, function, req_gpus > 0
