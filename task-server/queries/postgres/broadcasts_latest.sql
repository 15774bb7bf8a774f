-- The latest broadcast per target (package, version spec), oldest first, at most $1: what a
-- processor that just started needs.
SELECT seq, id, package, version, payload, created_at FROM broadcasts
WHERE seq IN (SELECT max(seq) FROM broadcasts GROUP BY package, coalesce(version, ''))
ORDER BY seq LIMIT $1
