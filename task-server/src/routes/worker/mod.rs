//! `/worker` routes: lease, heartbeat, release, answer.
pub mod heartbeat;
pub mod release;
pub mod request_task;
pub mod submit_answer;
