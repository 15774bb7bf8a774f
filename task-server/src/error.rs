//! Store failures as HTTP errors; the error type itself lives in `crpc-service`.
pub use crpc_service::error::ApiError;

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => ApiError::unavailable("the server is shutting down"),
            StoreError::Db(sqlx::Error::PoolTimedOut) => {
                ApiError::unavailable("the database is overloaded; retry shortly")
            }
            other => ApiError::internal(other),
        }
    }
}
