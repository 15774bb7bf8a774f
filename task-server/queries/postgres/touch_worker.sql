-- $1 worker id, $2 now, $3 dispatch ms (NULL: keep), $4 subject, $5 speed (NULL: keep).
UPDATE workers SET last_seen = GREATEST(last_seen, $2), dispatch_ms = COALESCE($3, dispatch_ms),
  speed = COALESCE($5, speed)
WHERE worker_id = $1 AND owner = $4
