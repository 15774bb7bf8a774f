-- Records the limits of caps: $1 JSON [{key, max_running, rate_per_s}] (store::CapLimit), $2 now.
INSERT INTO caps (key, max_running, rate_per_s, updated_at)
SELECT j->>'key', (j->>'max_running')::bigint, (j->>'rate_per_s')::float8, $2 FROM jsonb_array_elements($1::jsonb) AS j
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running, rate_per_s = excluded.rate_per_s,
                                updated_at = excluded.updated_at
