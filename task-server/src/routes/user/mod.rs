//! `/user` routes: submit, read, wait, cancel, estimate.
pub mod batch_results;
pub mod cancel_batch;
pub mod cancel_task;
pub mod create_schedule;
pub mod delete_schedule;
pub mod delete_task;
pub mod estimate_time_left;
pub mod get_batch;
pub mod get_task;
pub mod list_batches;
pub mod list_schedules;
pub mod list_tasks;
pub mod list_workers;
pub mod request_answer;
pub mod stats;
pub mod submit_batch;
pub mod submit_task;
pub mod summary;

use serde::Deserialize;

/// `?wait=SECONDS` on long-poll routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for a change.
    pub wait: Option<f64>,
}
