-- Moves rate caps on: $1 JSON [{key, next_at}].
UPDATE caps SET next_at = (j->>'next_at')::float8 FROM jsonb_array_elements($1::jsonb) AS j
WHERE caps.key = j->>'key'
