//! Request bodies read the way fastify and zod read them: size limit, JSON check, and zod
//! issues collected for a 422.

use axum::body::Body;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::error::ApiError;
use super::BODY_LIMIT;

pub(super) fn issue(path: &str, expected: &str, received: &str, message: &str) -> Value {
    let code = if received == "undefined" || expected != "enum" {
        "invalid_type"
    } else {
        "invalid_enum_value"
    };
    json!({"code": code, "expected": expected, "received": received, "path": [path], "message": message})
}

pub(super) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON body read like fastify + zod: over 1 MiB or not JSON is a 500; schema violations
/// are collected as zod issues and answered 422.
pub(super) struct JsonBody {
    pub(super) map: Map<String, Value>,
    pub(super) issues: Vec<Value>,
}

impl JsonBody {
    pub(super) async fn read(body: Body) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| ApiError::internal("InternalServerError"))?;
        let bytes = Zeroizing::new(bytes.to_vec());
        let value: Value = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ApiError::internal("InternalServerError"))?
        };
        match value {
            Value::Object(map) => Ok(Self {
                map,
                issues: Vec::new(),
            }),
            other => Err(ApiError::validation(vec![issue(
                "",
                "object",
                json_type(&other),
                "Expected object",
            )])),
        }
    }

    pub(super) fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.issues
                        .push(issue(key, "string", "undefined", "Required"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let received = json_type(other);
                self.issues.push(issue(
                    key,
                    "string",
                    received,
                    &format!("Expected string, received {received}"),
                ));
                None
            }
        }
    }

    pub(super) fn kind(&mut self) -> String {
        match self.string("type", false).as_deref() {
            None | Some("shared") => "shared".into(),
            Some("personal") => "personal".into(),
            Some(_) => {
                self.issues.push(json!({
                    "code": "invalid_enum_value",
                    "options": ["shared", "personal"],
                    "path": ["type"],
                    "message": "Invalid enum value. Expected 'shared' | 'personal'",
                }));
                "shared".into()
            }
        }
    }

    pub(super) fn finish(self) -> Result<Map<String, Value>, ApiError> {
        if self.issues.is_empty() {
            Ok(self.map)
        } else {
            Err(ApiError::validation(self.issues))
        }
    }
}
