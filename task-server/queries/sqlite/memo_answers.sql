-- ?1 JSON [{id, owner, hash}]: waiting tasks about to be queued that memoize. For each, the
-- answer of the owner's newest succeeded memoizing task with the same (substituted) call, or
-- NULL when there is none.
WITH m AS MATERIALIZED (
  SELECT j.value->>'id' AS id, j.value->>'owner' AS owner, j.value->>'hash' AS hash
  FROM json_each(?1) AS j)
SELECT m.id, (SELECT t.answer FROM tasks t
              WHERE t.args_hash = m.hash AND t.memoize = 1 AND t.owner = m.owner
                AND t.state = 'succeeded' ORDER BY t.seq DESC LIMIT 1) AS answer
FROM m
