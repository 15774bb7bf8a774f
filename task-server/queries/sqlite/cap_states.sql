-- The caps of ?1 (JSON array of keys) with their tasks ungated and unfinished, and
-- of those the ones not leased yet (rows::CapRow).
SELECT c.key, c.max_running, c.rate_per_s, c.next_at,
       (SELECT count(*) FROM tasks t WHERE t.state IN ('queued', 'leased') AND t.gated = 0 AND t.cap_fn = c.key)
     + (SELECT count(*) FROM tasks t WHERE t.state IN ('queued', 'leased') AND t.gated = 0 AND t.cap_key = c.key) AS running,
       (SELECT count(*) FROM tasks t WHERE t.state = 'queued' AND t.gated = 0 AND t.cap_fn = c.key)
     + (SELECT count(*) FROM tasks t WHERE t.state = 'queued' AND t.gated = 0 AND t.cap_key = c.key) AS ready
FROM caps c WHERE c.key IN (SELECT value FROM json_each(?1))
