-- Cancels every unfinished task of a batch. $1 now, $2 unused here (completion order comes
-- from a sequence), $3 default result TTL (s), $4 error (JSON), $5 batch.
UPDATE tasks SET state = 'cancelled', finished_at = $1, finish_order = nextval('finish_order_counter'),
       expires_at = $1 + COALESCE(ttl_s, $3) * 1000, error = $4::jsonb
WHERE batch_id = $5 AND state IN ('waiting', 'queued', 'leased')
RETURNING id, state, batch_id
