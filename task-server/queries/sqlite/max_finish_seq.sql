SELECT max(finish_seq) FROM tasks
