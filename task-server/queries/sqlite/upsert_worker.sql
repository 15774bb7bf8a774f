-- A processor sighting; changes nothing when the worker id belongs to another subject or a newer
-- run (incarnation) of it was already seen. ?1 worker id, ?2 subject, ?3 slots, ?4 capabilities
-- (JSON), ?5 now, ?6 dispatch ms, ?7 incarnation (UUIDv7 text: newer runs sort higher), ?8 speed.
INSERT INTO workers (worker_id, owner, slots, capabilities, first_seen, last_seen, dispatch_ms,
                     incarnation, speed)
VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)
ON CONFLICT(worker_id) DO UPDATE SET slots = excluded.slots, capabilities = excluded.capabilities,
  last_seen = max(workers.last_seen, excluded.last_seen),
  dispatch_ms = coalesce(excluded.dispatch_ms, workers.dispatch_ms),
  speed = coalesce(excluded.speed, workers.speed),
  incarnation = coalesce(excluded.incarnation, workers.incarnation)
WHERE workers.owner = excluded.owner
  AND (excluded.incarnation IS NULL OR workers.incarnation IS NULL
       OR excluded.incarnation >= workers.incarnation)
