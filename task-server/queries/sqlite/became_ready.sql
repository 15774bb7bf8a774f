-- Whether a delayed task became due in (?1, ?2].
SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND available_at > ?1 AND available_at <= ?2)
