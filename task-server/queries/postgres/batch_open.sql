-- $1 batch. Whether any of its tasks is unfinished (every finish takes a `finish_order`).
SELECT EXISTS (SELECT 1 FROM tasks WHERE batch_id = $1 AND finish_order IS NULL)
