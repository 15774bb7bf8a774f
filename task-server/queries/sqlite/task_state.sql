SELECT state FROM tasks WHERE id = ?1
