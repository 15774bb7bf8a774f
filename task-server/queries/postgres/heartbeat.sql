-- Extends the holder's current leases. $1 leases (JSON [{id, lease_epoch, progress}]),
-- $2 new deadline, $3 worker id (NULL: any of the subject's workers), $4 token subject.
WITH a AS (SELECT (v->>'id')::uuid AS id, (v->>'lease_epoch')::bigint AS epoch, (v->>'progress')::float8 AS progress
           FROM jsonb_array_elements($1::jsonb) v)
UPDATE tasks t SET lease_deadline = CASE WHEN t.timeout_at IS NULL THEN $2 ELSE LEAST($2, t.timeout_at) END,
       progress = COALESCE(a.progress, t.progress)
FROM a WHERE t.id = a.id AND t.state = 'leased' AND t.lease_epoch = a.epoch
  AND ($3::text IS NULL OR t.lease_worker = $3) AND COALESCE(t.lease_owner, $4) = $4
RETURNING t.id
