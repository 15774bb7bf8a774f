-- Numbers a batch's newly visible finished rows (completion cursor), in completion order. Run
-- under the batch's advisory lock, so numbers follow visibility order and a cursor never skips.
UPDATE tasks t SET finish_seq = o.fs FROM
  (SELECT seq, nextval('finish_seq_counter') AS fs FROM
    (SELECT seq FROM tasks WHERE batch_id = $1 AND finished_at IS NOT NULL AND finish_seq IS NULL
     ORDER BY finish_order, seq) x) o
WHERE t.seq = o.seq
