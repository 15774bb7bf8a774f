-- The statistics row of one function, created empty if missing. $1 package, $2 version, $3 function.
INSERT INTO function_stats (package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen)
VALUES ($1, $2, $3, 0, 0, 0, 0, '{}', 0) ON CONFLICT DO NOTHING
