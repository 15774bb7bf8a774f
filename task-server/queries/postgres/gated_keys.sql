-- Caps that have gated tasks, at most $1 of each kind (each found by one index seek: a loose
-- index scan over tasks_gated_fn and tasks_gated_key).
WITH RECURSIVE
  f(key, n) AS (SELECT min(cap_fn), 1 FROM tasks WHERE state = 'queued' AND gated AND cap_fn IS NOT NULL
                UNION ALL
                SELECT (SELECT min(cap_fn) FROM tasks WHERE state = 'queued' AND gated AND cap_fn > f.key), f.n + 1
                FROM f WHERE f.key IS NOT NULL AND f.n < $1),
  k(key, n) AS (SELECT min(cap_key), 1 FROM tasks WHERE state = 'queued' AND gated AND cap_key IS NOT NULL
                UNION ALL
                SELECT (SELECT min(cap_key) FROM tasks WHERE state = 'queued' AND gated AND cap_key > k.key), k.n + 1
                FROM k WHERE k.key IS NOT NULL AND k.n < $1)
SELECT key FROM f WHERE key IS NOT NULL
UNION ALL
SELECT key FROM k WHERE key IS NOT NULL
