-- Broadcasts after seq $1, and any made since $2 (a PostgreSQL seq may commit after a higher
-- one; processors recognise repeats by id), oldest first, at most $3.
SELECT seq, id, package, version, payload, created_at FROM broadcasts
WHERE seq > $1 OR created_at > $2 ORDER BY seq LIMIT $3
