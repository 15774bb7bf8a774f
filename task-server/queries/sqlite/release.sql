-- Hands never-started leases back: queued again at their old place (`seq`), `attempt` as before
-- (a chained lease, `follows`, is `waiting` again: its arguments still hold references),
-- the lease; the epoch stays, so an answer for the released lease is stale. ?1 leases (JSON
-- [{id, lease_epoch}]), ?2 worker id (NULL: any of the subject's workers), ?3 token subject.
WITH a AS MATERIALIZED (
  SELECT j.value->>'id' AS id, j.value->>'lease_epoch' AS epoch FROM json_each(?1) AS j)
UPDATE tasks SET state = CASE WHEN tasks.follows IS NULL THEN 'queued' ELSE 'waiting' END, follows = NULL, attempt = tasks.attempt - 1, leased_at = NULL,
       lease_deadline = NULL, timeout_at = NULL, progress = NULL
FROM a
WHERE tasks.id = a.id AND tasks.state = 'leased' AND tasks.lease_epoch = a.epoch
  AND (?2 IS NULL OR tasks.lease_worker = ?2) AND coalesce(tasks.lease_owner, ?3) = ?3
RETURNING tasks.id, tasks.state
