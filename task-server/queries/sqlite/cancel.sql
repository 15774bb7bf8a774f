-- ?1 now, ?2 completion number, ?3 default result TTL (s), ?4 error (JSON), ?5 id.
UPDATE tasks SET state = 'cancelled', finished_at = ?1, finish_seq = ?2,
       expires_at = ?1 + coalesce(ttl_s, ?3) * 1000, error = ?4
WHERE id = ?5 AND state IN ('waiting', 'queued', 'leased')
RETURNING batch_id
