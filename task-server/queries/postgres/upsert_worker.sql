-- A processor sighting; changes nothing when the worker id belongs to another subject.
-- $1 worker id, $2 subject, $3 slots, $4 capabilities (JSON), $5 now, $6 dispatch ms.
INSERT INTO workers (worker_id, owner, slots, capabilities, first_seen, last_seen, dispatch_ms)
VALUES ($1, $2, $3, $4::jsonb, $5, $5, $6)
ON CONFLICT (worker_id) DO UPDATE SET slots = excluded.slots, capabilities = excluded.capabilities,
  last_seen = GREATEST(workers.last_seen, excluded.last_seen),
  dispatch_ms = COALESCE(excluded.dispatch_ms, workers.dispatch_ms)
WHERE workers.owner = excluded.owner
