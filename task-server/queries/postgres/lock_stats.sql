-- The statistics row of one function, locked for this transaction (flush_stats takes them in
-- sorted key order, so replicas cannot deadlock). $1 package, $2 version, $3 function.
SELECT package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen, model
FROM function_stats WHERE package = $1 AND version = $2 AND function = $3 FOR UPDATE
