-- ?1 batch. Whether any of its tasks is unfinished (every finish numbers `finish_seq`): one
-- seek in `tasks_batch`, where a count by state reads every row of the batch.
SELECT EXISTS (SELECT 1 FROM tasks WHERE batch_id = ?1 AND finish_seq IS NULL)
