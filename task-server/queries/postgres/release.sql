-- Hands never-started leases back: queued again at their old place (`seq`), `attempt` as before
-- (a chained lease, `follows`, is `waiting` again: its arguments still hold references),
-- the lease; the epoch stays, so an answer for the released lease is stale. $1 leases (JSON
-- [{id, lease_epoch}]), $2 worker id (NULL: any of the subject's workers), $3 token subject.
WITH a AS (SELECT (v->>'id')::uuid AS id, (v->>'lease_epoch')::bigint AS epoch
           FROM jsonb_array_elements($1::jsonb) v)
UPDATE tasks t SET state = CASE WHEN t.follows IS NULL THEN 'queued' ELSE 'waiting' END, follows = NULL, attempt = t.attempt - 1, leased_at = NULL,
       lease_deadline = NULL, timeout_at = NULL, progress = NULL
FROM a WHERE t.id = a.id AND t.state = 'leased' AND t.lease_epoch = a.epoch
  AND ($2::text IS NULL OR t.lease_worker = $2) AND COALESCE(t.lease_owner, $3) = $3
RETURNING t.id, t.state
