-- Records the limits of caps: ?1 JSON [{key, max_running, rate_per_s}] (store::CapLimit), ?2 now.
INSERT INTO caps (key, max_running, rate_per_s, updated_at)
SELECT j.value ->> 'key', j.value ->> 'max_running', j.value ->> 'rate_per_s', ?2 FROM json_each(?1) AS j
WHERE true
ON CONFLICT (key) DO UPDATE SET max_running = excluded.max_running, rate_per_s = excluded.rate_per_s,
                                updated_at = excluded.updated_at
