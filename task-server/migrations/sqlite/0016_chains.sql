-- Chained leases (issue 17's chain bench). `follows` is set on a waiting task leased behind the
-- task it alone waits for (leased to the same processor in the same claim): its arguments still
-- hold the references, which the processor replaces with that task's answer. Any way such a
-- lease ends other than an answer (release, expiry, a retryable error) makes it `waiting` again
-- instead of `queued`, and the settling queues it the usual way.
ALTER TABLE tasks ADD COLUMN follows TEXT;
