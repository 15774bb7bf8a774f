-- Batch records past the result TTL (?1: created before) whose tasks are all gone, walking
-- `batches_created` from the oldest. ?2 limit.
DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE created_at <= ?1
  AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.batch_id = batches.id) ORDER BY created_at LIMIT ?2)
