//! Rich results: the display outputs and structured errors an execution produces.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One rich output: the same value in one or more representations, as Jupyter's
/// `display_data` and `execute_result` carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DisplayOutput {
    /// MIME type to representation: a string for text types (`text/plain`, `text/html`,
    /// `text/markdown`, `image/svg+xml`, ...), base64 for binary ones (`image/png`,
    /// `image/jpeg`, `application/pdf`), any JSON value for `application/json`.
    pub data: BTreeMap<String, Value>,
    /// Per-type details the producer gave (such as an image's `width` and `height`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Whether this is the value of the last expression (at most one per execution).
    #[serde(default)]
    pub is_main_result: bool,
}

/// An uncaught exception, as Jupyter reports one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecError {
    /// The exception's type (`ZeroDivisionError`, `TypeError`, `KeyboardInterrupt`).
    pub name: String,
    /// Its message.
    pub value: String,
    /// The traceback as printed on standard error (the runner's own frames left out).
    pub traceback: String,
}
