-- Queued tasks that run before (or are) the task at priority ?1 and seq ?2.
SELECT package, version, function, count(*) AS n FROM tasks
WHERE state = 'queued' AND (priority > ?1 OR (priority = ?1 AND seq <= ?2))
GROUP BY package, version, function
