-- $1 JSON [{id, owner, hash}]: waiting tasks about to be queued that memoize. For each, the
-- answer of the owner's newest succeeded memoizing task with the same (substituted) call, or
-- NULL when there is none.
SELECT (v->>'id')::uuid AS id,
       (SELECT t.answer::text FROM tasks t
        WHERE t.args_hash = v->>'hash' AND t.memoize AND t.owner = v->>'owner'
          AND t.state = 'succeeded' ORDER BY t.seq DESC LIMIT 1) AS answer
FROM jsonb_array_elements($1::jsonb) v
