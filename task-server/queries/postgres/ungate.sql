-- Lets gated tasks through: $1 JSON [{seq, at}] (at: their earliest start, a rate's slot).
UPDATE tasks t SET gated = FALSE, available_at = GREATEST(t.available_at, (u->>'at')::bigint)
FROM jsonb_array_elements($1::jsonb) AS u
WHERE t.seq = (u->>'seq')::bigint AND t.gated AND t.state = 'queued'
