SELECT state, count(*) AS n FROM tasks WHERE owner = $1 GROUP BY state
