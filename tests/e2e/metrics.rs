//! Issue 16: `/metrics` on the server (admin token on the main port, no token on
//! `--metrics-bind`) and on the processor (`--metrics-bind`), parsed as Prometheus text and
//! checked against the queue's real state.
use std::time::Duration;

use crpc_tests::Cluster;
use prometheus_parse::{Scrape, Value as Prom};
use serde_json::json;

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of `name` whose labels include `labels` (a histogram: its count).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .find(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
            Prom::Histogram(b) => b.iter().map(|b| b.count).fold(0.0, f64::max),
            Prom::Summary(_) => f64::NAN,
        })
}

/// The `http://ADDR/metrics` a process logged.
fn logged_url(log: &str) -> String {
    let at = log
        .find("metrics on http://")
        .expect("metrics address logged");
    log[at + "metrics on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

async fn get_text(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_queue_on_server_and_processor() {
    let c = Cluster::start(&["--metrics-bind", "127.0.0.1:0"]);
    c.publish("testkit", None).await;
    let p = c.processor(&["--cpu-slots", "2", "--metrics-bind", "127.0.0.1:0"]);
    let mut done = Vec::new();
    for i in 0..3 {
        done.push(
            c.submit(json!({"package": "testkit", "function": "echo", "args": [i]}))
                .await,
        );
    }
    done.push(
        c.submit(json!({"package": "testkit", "function": "fail", "args": ["fatal", "no"]}))
            .await,
    );
    for id in &done {
        c.wait(id, Duration::from_secs(60)).await;
    }
    // Two tasks no live slot can run (they need a GPU), and one cancelled before it ran.
    for _ in 0..2 {
        c.submit(json!({"package": "testkit", "function": "noop", "resources": {"gpus": 1}}))
            .await;
    }
    let cancelled = c
        .submit(json!({"package": "testkit", "function": "noop", "resources": {"gpus": 1}}))
        .await;
    let (st, _) = c
        .user
        .post(&format!("/user/tasks/{cancelled}/cancel"), &json!({}))
        .await;
    assert_eq!(st, 200);
    // An id in a path must not become a label value.
    let stranger = uuid::Uuid::now_v7().to_string();
    c.user
        .get(&format!("/user/request_answer/{stranger}"))
        .await;

    // The main port: no token 401, a user token 403, an admin token the text.
    let url = format!("{}/metrics", c.server.url);
    assert_eq!(get_text(&url, None).await.0, 401);
    assert_eq!(get_text(&url, Some(&c.user_token)).await.0, 403);
    let admin = c.mint(task_api::Role::Admin, "ops");
    let (st, text) = get_text(&url, Some(&admin)).await;
    assert_eq!(st, 200, "{text}");
    assert!(!text.contains(&stranger), "an id became a label");
    let s = parse(&text);
    let tasks = |state: &str, function: &str| {
        value(
            &s,
            "crpc_tasks",
            &[("state", state), ("function", function)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(tasks("succeeded", "echo"), 3.0, "{text}");
    assert_eq!(tasks("failed", "fail"), 1.0);
    assert_eq!(tasks("queued", "noop"), 2.0);
    assert_eq!(tasks("cancelled", "noop"), 1.0);
    let finished = |state| value(&s, "crpc_tasks_finished_total", &[("state", state)]);
    assert_eq!(finished("succeeded"), Some(3.0), "{text}");
    assert_eq!(finished("failed"), Some(1.0));
    assert_eq!(finished("cancelled"), Some(1.0));
    let submits = [
        ("route", "/user/submit_task"),
        ("method", "POST"),
        ("status", "201"),
    ];
    assert_eq!(
        value(&s, "crpc_http_requests_total", &submits),
        Some(7.0),
        "{text}"
    );
    let answers = [("route", "/user/request_answer/:id"), ("status", "404")];
    assert_eq!(
        value(&s, "crpc_http_requests_total", &answers),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("crpc_http_request_duration_seconds_bucket{route=\"/user/submit_task\""),
        "a real histogram: {text}"
    );
    // GPU work with no GPU slot: an infinite backlog; the CPU class is idle on 2 live slots.
    assert_eq!(
        value(&s, "crpc_backlog_seconds", &[("class", "gpu")]),
        Some(f64::INFINITY)
    );
    assert_eq!(
        value(&s, "crpc_backlog_tasks", &[("class", "gpu")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "crpc_backlog_seconds", &[("class", "cpu")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "crpc_live_slots", &[("class", "cpu")]), Some(2.0));
    assert_eq!(value(&s, "crpc_live_processors", &[]), Some(1.0));

    // The same numbers without a token on --metrics-bind (and nothing else served there).
    let bind = logged_url(&c.server.log());
    let (st, text) = get_text(&bind, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        value(
            &parse(&text),
            "crpc_tasks_finished_total",
            &[("state", "succeeded")]
        ),
        Some(3.0)
    );
    let other = bind.replace("/metrics", "/user/tasks");
    let (st, body) = get_text(&other, None).await;
    assert_eq!(st, 404);
    let body: serde_json::Value = serde_json::from_str(&body).expect("the JSON error body");
    assert_eq!(body["success"], false, "{body}");

    // The processor: its runs by outcome, the install and compile of testkit, its slots.
    let (st, text) = get_text(&logged_url(&p.log()), None).await;
    assert_eq!(st, 200);
    let s = parse(&text);
    let run = |function, outcome| {
        value(
            &s,
            "crpc_processor_run_seconds",
            &[("function", function), ("outcome", outcome)],
        )
    };
    assert_eq!(run("echo", "ok"), Some(3.0), "{text}");
    assert_eq!(run("fail", "fatal"), Some(1.0), "{text}");
    assert_eq!(
        value(
            &s,
            "crpc_processor_install_seconds",
            &[("package", "testkit")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, "crpc_processor_compile_seconds", &[]), Some(1.0));
    assert_eq!(
        value(&s, "crpc_processor_slots", &[("class", "cpu")]),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "crpc_processor_busy_slots", &[("class", "cpu")]),
        Some(0.0)
    );
}
