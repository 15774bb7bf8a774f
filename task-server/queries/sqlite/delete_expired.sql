-- Finished tasks past their retention. ?1 now, ?2 limit.
DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE expires_at <= ?1 LIMIT ?2)
