-- Finished tasks past their retention. $1 now, $2 limit.
DELETE FROM tasks WHERE seq = ANY(ARRAY(SELECT seq FROM tasks WHERE expires_at <= $1
  ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
