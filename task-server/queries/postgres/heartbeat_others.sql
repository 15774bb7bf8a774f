-- Of the heartbeat's leases ($1, as in heartbeat.sql): the holder's cancelled ones, and current
-- ones (epoch matching) that another worker holds. $2 worker id, $3 token subject.
SELECT t.id, t.state = 'cancelled' AS cancelled
FROM tasks t JOIN jsonb_array_elements($1::jsonb) v ON t.id = (v->>'id')::uuid
WHERE t.lease_epoch = (v->>'lease_epoch')::bigint AND (
  (t.state = 'cancelled' AND ($2::text IS NULL OR t.lease_worker = $2) AND COALESCE(t.lease_owner, $3) = $3)
  OR (t.state = 'leased' AND NOT (($2::text IS NULL OR t.lease_worker = $2) AND COALESCE(t.lease_owner, $3) = $3)))
