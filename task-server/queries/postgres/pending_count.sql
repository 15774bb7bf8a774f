SELECT count(*) FROM tasks WHERE owner = $1 AND state IN ('waiting', 'queued')
