-- Who a worker id belongs to and its newest run, when a sighting did not apply. $1 worker id.
SELECT owner, incarnation FROM workers WHERE worker_id = $1
