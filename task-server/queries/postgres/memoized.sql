-- $1 args hash, $2 owner.
SELECT id, state FROM tasks WHERE args_hash = $1 AND memoize AND owner = $2
  AND state IN ('waiting', 'queued', 'leased', 'succeeded') ORDER BY seq DESC LIMIT 1
