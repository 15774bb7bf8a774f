//! `/worker` routes: lease, heartbeat, answer.
pub mod heartbeat;
pub mod request_task;
pub mod submit_answer;
