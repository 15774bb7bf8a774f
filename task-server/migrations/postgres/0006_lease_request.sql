-- The lease request that took each lease (a processor-chosen id): a processor that got no answer
-- to a lease request sends it again, and gets back what the first one took instead of new leases
-- (a claim the server committed just before dying is not lost until its TTL).
ALTER TABLE tasks ADD COLUMN lease_request TEXT;
