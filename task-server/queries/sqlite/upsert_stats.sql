INSERT INTO function_stats (package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen, model)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT(package, version, function) DO UPDATE SET count = excluded.count,
  failures = excluded.failures, mean_ms = excluded.mean_ms, var_ms = excluded.var_ms,
  sketch = excluded.sketch, last_seen = excluded.last_seen,
  model = excluded.model
