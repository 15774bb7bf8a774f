//! The OpenAPI document of one package version: how to submit each of its functions to a task
//! server, with JSON Schemas generated from the manifest's typed signatures.
use crpc_package::manifest::{FunctionSig, Manifest};
use serde_json::{json, Map, Value};

/// Task options every function takes (`TaskSpec` less what the package fixes).
fn options() -> Value {
    json!({
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "timeout_s": {"type": "integer", "minimum": 1, "maximum": 604800},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
        "idempotency_key": {"type": "string"},
        "memoize": {"type": "boolean"},
        "ttl_s": {"type": "integer", "minimum": 0, "maximum": 31536000},
        "resources": {"type": "object"},
    })
}

/// `<function>.task`: the body of `POST /user/submit_task` for one function of this version.
fn task_schema(m: &Manifest, function: &str, sig: &FunctionSig) -> Value {
    let mut props = options().as_object().cloned().unwrap_or_default();
    props.insert("package".into(), json!({"const": m.name}));
    props.insert("function".into(), json!({"const": function}));
    props.insert(
        "version".into(),
        json!({"type": "string", "description": format!("semver requirement; `={}` for this version", m.version)}),
    );
    props.insert("args".into(), sig.args_schema());
    props.insert("kwargs".into(), sig.kwargs_schema());
    json!({
        "type": "object",
        "title": format!("{}.{function}", m.name),
        "description": sig.description.clone().unwrap_or_default(),
        "required": ["package", "function"],
        "properties": props,
        "additionalProperties": false,
    })
}

/// `<function>.answer`: `GET /user/request_answer/{id}` of such a task.
fn answer_schema(sig: &FunctionSig) -> Value {
    json!({
        "type": "object",
        "required": ["success", "id", "state", "attempt"],
        "properties": {
            "success": {"type": "boolean"},
            "id": {"type": "string", "format": "uuid"},
            "state": {"enum": ["waiting", "queued", "leased", "succeeded", "failed", "cancelled"]},
            "answer": sig.returns_schema(),
            "error": {"type": "object", "properties": {"kind": {"type": "string"}, "message": {"type": "string"}}},
            "progress": {"type": "number"},
            "attempt": {"type": "integer"},
        },
    })
}

/// The document.
pub fn document(m: &Manifest) -> Value {
    let mut schemas = Map::new();
    let (mut tasks, mut answers) = (Vec::new(), Vec::new());
    for (name, sig) in &m.functions {
        schemas.insert(format!("{name}.args"), sig.args_schema());
        schemas.insert(format!("{name}.kwargs"), sig.kwargs_schema());
        schemas.insert(format!("{name}.returns"), sig.returns_schema());
        schemas.insert(format!("{name}.task"), task_schema(m, name, sig));
        schemas.insert(format!("{name}.answer"), answer_schema(sig));
        tasks.push(json!({"$ref": format!("#/components/schemas/{name}.task")}));
        answers.push(json!({"$ref": format!("#/components/schemas/{name}.answer")}));
    }
    let error = json!({"description": "The one JSON error body", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"success": {"const": false}, "error": {"type": "object"}}}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("{} {}", m.name, m.version),
            "version": m.version,
            "description": m.description.clone().unwrap_or_default(),
        },
        "paths": {
            "/user/submit_task": {"post": {
                "operationId": "submit_task",
                "summary": format!("Submit a task running a function of {}@{}", m.name, m.version),
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": tasks}}}},
                "responses": {
                    "201": {"description": "Queued", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"success": {"type": "boolean"}, "id": {"type": "string", "format": "uuid"}, "state": {"type": "string"}}}}}},
                    "422": error,
                },
                "security": [{"bearer": []}],
            }},
            "/user/request_answer/{id}": {"get": {
                "operationId": "request_answer",
                "summary": "The task's state and, once it succeeded, its answer (of the function's declared type)",
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}},
                    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0}},
                ],
                "responses": {"200": {"description": "The task", "content": {"application/json": {"schema": {"anyOf": answers}}}}, "404": error},
                "security": [{"bearer": []}],
            }},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}
