-- A processor run that ended hands back every lease still recorded as its own: it holds nothing
-- any more (it answered or handed back all it received), so these are grants it never received.
-- Queued again at their place, attempt unused. ?1 worker id, ?2 token subject, ?3 incarnation.
UPDATE tasks SET state = CASE WHEN follows IS NULL THEN 'queued' ELSE 'waiting' END, follows = NULL, attempt = attempt - 1, leased_at = NULL,
       lease_deadline = NULL, timeout_at = NULL, progress = NULL
WHERE state = 'leased' AND lease_worker = ?1 AND lease_owner = ?2 AND lease_incarnation = ?3
RETURNING id, state
