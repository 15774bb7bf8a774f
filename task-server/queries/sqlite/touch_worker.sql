-- ?1 worker id, ?2 now, ?3 dispatch ms (NULL: keep), ?4 subject.
UPDATE workers SET last_seen = max(last_seen, ?2), dispatch_ms = coalesce(?3, dispatch_ms)
WHERE worker_id = ?1 AND owner = ?4
