"""The Python client against a real server with a real processor running `testkit`.

The harness (`tests/e2e/python_client.rs`) starts them and passes CRPC_SERVER and CRPC_TOKEN;
run by hand with a `crpc dev` whose examples include testkit:
    CRPC_SERVER=... CRPC_TOKEN=... python3 -m unittest discover -s sdk/python/tests
"""

import os
import tempfile
import unittest

import crpc


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = crpc.Client()

    def test_submit_and_result(self):
        task = self.client.submit("testkit.echo", {"n": 41, "s": "é"})
        self.assertEqual(task.result(), {"n": 41, "s": "é"})
        self.assertEqual(self.client.result(task.id, wait=5), {"n": 41, "s": "é"})
        self.assertEqual(self.client.status(task)["state"], "succeeded")

    def test_files_go_up_and_come_back_checked(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.bin")
            data = os.urandom(3 << 20)
            with open(src, "wb") as f:
                f.write(data)
            value = self.client.put(src)
            self.assertEqual(set(value), {"$file"})
            # A task takes it; echo hands the value back, as answers carry files.
            answer = self.client.submit("testkit.echo", value).result(wait=30)
            self.assertEqual(answer, value)
            got = self.client.get(dict(answer, name="copy.bin"), d)
            self.assertEqual(got, os.path.join(d, "copy.bin"))
            with open(got, "rb") as f:
                self.assertEqual(f.read(), data)
            with self.assertRaises(crpc.NotFound):
                self.client.get("sha256:" + "0" * 64, os.path.join(d, "none.bin"))
            self.assertFalse(os.path.exists(os.path.join(d, "none.bin")))
            with self.assertRaises(ValueError):
                self.client.get("../../etc/passwd", d)

    def test_keyword_arguments_and_options(self):
        task = self.client.submit("testkit.sleep_ms", kwargs={"ms": 1}, priority=5, max_attempts=1)
        self.assertEqual(task.result(wait=30), 1)

    def test_result_wait_zero_raises_not_finished_then_waits(self):
        task = self.client.submit("testkit.sleep_ms", 1500)
        with self.assertRaises(crpc.NotFinished) as cm:
            task.result(wait=0)
        self.assertIn(cm.exception.state, ("queued", "leased"))
        with self.assertRaises(crpc.NotFinished):
            task.result(wait=0.2)
        self.assertEqual(task.result(), 1500)

    def test_map_keeps_input_order_and_reads_inputs_like_crpc_map(self):
        inputs = [[i] if i % 3 == 0 else {"args": [i]} if i % 3 == 1 else i for i in range(60)]
        self.assertEqual(self.client.map("testkit.echo", inputs), list(range(60)))
        # A dict without args/kwargs is the one argument; a list is the arguments.
        self.assertEqual(self.client.map("testkit.echo", [{"a": 1}, [[1, 2]]]), [{"a": 1}, [1, 2]])

    def test_map_over_more_than_one_batch(self):
        n = crpc.client.BATCH + 5
        self.assertEqual(self.client.map("testkit.echo", range(n)), list(range(n)))

    def test_imap_unordered_yields_everything_as_it_finishes(self):
        got = list(self.client.imap_unordered("testkit.sleep_ms", [[400], [1], [1]]))
        self.assertEqual(sorted(got), [1, 1, 400])
        self.assertEqual(got[-1], 400, "the slow one finishes last (the harness gives 4 slots)")

    def test_a_failed_task_raises_task_failed_with_its_kind(self):
        task = self.client.submit("testkit.fail", "fatal", "boom", max_attempts=1)
        with self.assertRaises(crpc.TaskFailed) as cm:
            task.result()
        self.assertEqual((cm.exception.kind, cm.exception.message), ("fatal", "boom"))
        self.assertEqual(cm.exception.task_id, task.id)

    def test_map_raises_the_first_failure_or_returns_it_in_place(self):
        inputs = [["fatal", "no"], {"args": ["fatal", "nope"]}]
        with self.assertRaises(crpc.TaskFailed):
            self.client.map("testkit.fail", inputs, max_attempts=1)
        got = self.client.map("testkit.fail", inputs, max_attempts=1, return_exceptions=True)
        self.assertEqual([e.message for e in got], ["no", "nope"])

    def test_bad_arguments_are_invalid_request_naming_the_field(self):
        with self.assertRaises(crpc.InvalidRequest) as cm:
            self.client.submit("testkit.sleep_ms", "soon")
        e = cm.exception
        self.assertEqual((e.status, e.code), (422, "validation_failed"))
        self.assertEqual(e.details["field"], "args[0]")
        with self.assertRaises(crpc.InvalidRequest):
            self.client.map("testkit.echo", [{"args": [1], "extra": 2}])
        with self.assertRaises(TypeError):
            self.client.submit("testkit.echo", 1, priorty=3)

    def test_unknown_task_and_bad_token(self):
        with self.assertRaises(crpc.NotFound) as cm:
            self.client.result("00000000-0000-7000-8000-000000000000", wait=0)
        self.assertEqual(cm.exception.status, 404)
        with self.assertRaises(crpc.AuthError) as cm:
            crpc.Client(self.client.server, "not-a-token").estimate()
        self.assertEqual(cm.exception.status, 401)

    def test_unreachable_server(self):
        with self.assertRaises(crpc.Unreachable):
            crpc.Client("http://127.0.0.1:9", "t", timeout=2).estimate()

    def test_cancel(self):
        task = self.client.submit("testkit.sleep_ms", 5000)
        self.assertEqual(task.cancel(), "cancelled")
        with self.assertRaises(crpc.TaskCancelled):
            task.result()
        with self.assertRaises(crpc.Conflict):
            task.cancel()

    def test_a_task_takes_another_task_answer(self):
        a = self.client.submit("testkit.echo", {"n": [5, 6]})
        b = self.client.submit("testkit.echo", crpc.ref(a, "/n/1"), after=[a])
        self.assertEqual(b.result(), 6)
        failed = self.client.submit("testkit.fail", "fatal", "boom", max_attempts=1)
        with self.assertRaises(crpc.TaskFailed) as cm:
            self.client.submit("testkit.echo", crpc.ref(failed)).result()
        self.assertEqual(cm.exception.kind, "dependency_failed")
        self.assertIn(failed.id, cm.exception.message)

    def test_a_concurrency_key_runs_its_tasks_one_at_a_time(self):
        tasks = [self.client.submit("testkit.span", 30, concurrency_key="customer-1", max_concurrent=1)
                 for _ in range(6)]
        spans = sorted(t.result() for t in tasks)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            self.assertLessEqual(end, start, spans)
        with self.assertRaises(crpc.InvalidRequest):
            self.client.submit("testkit.span", 1, max_concurrent=2)

    def test_leaving_imap_early_cancels_the_rest_in_one_request(self):
        it = self.client.imap_unordered("testkit.sleep_ms", [[1]] + [[3000]] * 20)
        self.assertEqual(next(it), 1)
        it.close()
        batches = self.client._http.request("GET", "/user/batches")["batches"]
        newest = batches[0]
        self.assertEqual(newest["total"], 21)
        status = self.client._http.request("GET", f"/user/batches/{newest['batch_id']}", query={"wait": "10"})
        self.assertTrue(status["done"], status)
        self.assertGreaterEqual(status["counts"].get("cancelled", 0), 15, status)

    def test_estimate(self):
        est = self.client.estimate()
        self.assertTrue(est["success"])
        for key in ("time", "queued", "running", "per_function", "backlog"):
            self.assertIn(key, est)
        task = self.client.submit("testkit.sleep_ms", 200)
        self.assertIn("eta_s", self.client.estimate(task))
        task.result()

    def test_settings_come_from_the_crpc_config_file(self):
        saved = {k: os.environ.pop(k, None) for k in ("CRPC_SERVER", "CRPC_TOKEN", "CRPC_CONFIG")}
        try:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "config.toml")
                with open(path, "w") as f:
                    f.write(f'server = "{self.client.server}"\ntoken = "{saved["CRPC_TOKEN"]}"\n')
                os.environ["CRPC_CONFIG"] = path
                c = crpc.Client()
                self.assertEqual(c.server, self.client.server)
                self.assertEqual(c.submit("testkit.echo", 7).result(), 7)
        finally:
            os.environ.pop("CRPC_CONFIG", None)
            for k, v in saved.items():
                if v is not None:
                    os.environ[k] = v


class InputTest(unittest.TestCase):
    def test_inputs_read_like_crpc_map_lines(self):
        self.assertEqual(crpc.input_args([1, 2]), ([1, 2], {}))
        self.assertEqual(crpc.input_args({"args": [1], "kwargs": {"x": 2}}), ([1], {"x": 2}))
        self.assertEqual(crpc.input_args({"kwargs": {"x": 2}}), ([], {"x": 2}))
        self.assertEqual(crpc.input_args({"x": 2}), ([{"x": 2}], {}))
        self.assertEqual(crpc.input_args("s"), (["s"], {}))
        with self.assertRaises(crpc.InvalidRequest):
            crpc.input_args({"args": 1})

    def test_function_names(self):
        self.assertEqual(crpc.split_function("pkg.f"), ("pkg", "f"))
        self.assertEqual(crpc.split_function("f"), (None, "f"))
        self.assertEqual(crpc.split_function("f", "pkg"), ("pkg", "f"))


if __name__ == "__main__":
    unittest.main()
