SELECT package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen, model
FROM function_stats WHERE count > 0 ORDER BY package, version, function
