-- Broadcast ?1.
SELECT seq, id, package, version, payload, created_at FROM broadcasts WHERE id = ?1
