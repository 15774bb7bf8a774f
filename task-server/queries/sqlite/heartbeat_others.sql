-- Of the heartbeat's leases (?1, as in heartbeat.sql): the holder's cancelled ones, and current
-- ones (epoch matching) that another worker holds. ?2 worker id, ?3 token subject.
SELECT tasks.id, tasks.state = 'cancelled' AS cancelled FROM tasks JOIN json_each(?1) AS a ON tasks.id = a.value->>'id'
WHERE tasks.lease_epoch = a.value->>'lease_epoch' AND (
  (tasks.state = 'cancelled' AND (?2 IS NULL OR tasks.lease_worker = ?2) AND coalesce(tasks.lease_owner, ?3) = ?3)
  OR (tasks.state = 'leased' AND NOT ((?2 IS NULL OR tasks.lease_worker = ?2) AND coalesce(tasks.lease_owner, ?3) = ?3)))
