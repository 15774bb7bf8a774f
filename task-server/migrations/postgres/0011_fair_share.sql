-- Fair share (issue 22): within a priority, owners take turns. A task's `fair_tag` is its turn:
-- a submit's tasks take consecutive tags from max(the tag at the head of its priority's queue,
-- one past the owner's last unstarted task's tag), so an owner with a long backlog queues behind
-- its own tasks while another owner's first task lines up at the head. The claim takes
-- `priority DESC, fair_tag, seq`; rows from before this migration keep tag 0 (FIFO among them).
ALTER TABLE tasks ADD COLUMN fair_tag BIGINT NOT NULL DEFAULT 0;
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks(priority DESC, fair_tag, seq) WHERE state = 'queued';
DROP INDEX tasks_unstarted;
CREATE INDEX tasks_unstarted ON tasks(owner, fair_tag) WHERE state IN ('waiting', 'queued');
