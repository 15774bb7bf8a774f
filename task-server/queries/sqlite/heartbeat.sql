-- Extends the holder's current leases. ?1 leases (JSON [{id, lease_epoch, progress}]),
-- ?2 new deadline, ?3 worker id (NULL: any of the subject's workers), ?4 token subject.
WITH a AS MATERIALIZED (
  SELECT j.value->>'id' AS id, j.value->>'lease_epoch' AS epoch, j.value->>'progress' AS progress
  FROM json_each(?1) AS j)
UPDATE tasks SET lease_deadline = CASE WHEN tasks.timeout_at IS NULL THEN ?2 ELSE min(?2, tasks.timeout_at) END,
       progress = coalesce(a.progress, tasks.progress)
FROM a
WHERE tasks.id = a.id AND tasks.state = 'leased' AND tasks.lease_epoch = a.epoch
  AND (?3 IS NULL OR tasks.lease_worker = ?3) AND coalesce(tasks.lease_owner, ?4) = ?4
RETURNING tasks.id
