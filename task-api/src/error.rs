//! The one JSON error body every crpc service answers with.
use serde::{Deserialize, Serialize};

/// `{"success": false, "error": {"code", "message", "details"?}}`
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiErrorBody {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// Machine-readable code plus a human sentence.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// snake_case, stable: clients branch on it.
    pub code: String,
    /// One human sentence.
    pub message: String,
    /// Optional structured context (which field, which id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}
