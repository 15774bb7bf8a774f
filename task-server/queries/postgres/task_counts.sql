SELECT state, package, function, count(*) AS n FROM tasks GROUP BY state, package, function
