-- Moves rate caps on: ?1 JSON [{key, next_at}].
UPDATE caps SET next_at = j.value ->> 'next_at' FROM json_each(?1) AS j WHERE caps.key = j.value ->> 'key'
