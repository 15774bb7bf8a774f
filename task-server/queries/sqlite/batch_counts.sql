SELECT state, count(*) AS n FROM tasks WHERE batch_id = ?1 GROUP BY state
