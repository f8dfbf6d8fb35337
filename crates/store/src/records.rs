//! The one mapping between each record and its table: the columns it writes and how a row reads back.

use crate::{Result, StoreError};
use chrono::{DateTime, Utc};
use sandbox_core::model::{
    ApiKey, Context, Execution, IdempotencyRecord, ImagePull, InstallStatus, NetworkAttempt, PoolSandbox,
    PoolState, Session, SessionStatus, Template, TemplateStatus,
};
use sandbox_core::{CpuQuantity, ExecutionStatus, Language, MemoryQuantity};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{Any, Decode, Row, Type, ValueRef};
use std::fmt::Display;

/// A table holding one kind of record.
pub(crate) struct Table {
    /// The table's name.
    pub name: &'static str,
    /// What one row is called in a `Conflict` error.
    pub record: &'static str,
    /// The columns an update leaves alone (`id`, which names the row, among them).
    pub fixed: &'static [&'static str],
}

/// API keys; they are never updated, only revoked.
pub(crate) const API_KEYS: Table = Table { name: "api_keys", record: "API key", fixed: &["id"] };
/// Templates. An update leaves the image's status and pull alone: only
/// `Store::set_template_image` writes them, for the image the template names at the time.
pub(crate) const TEMPLATES: Table =
    Table { name: "templates", record: "template", fixed: &["id", "created_at", "status", "image_pull"] };
/// Sessions.
pub(crate) const SESSIONS: Table =
    Table { name: "sessions", record: "session", fixed: &["id", "owner_key_id", "created_at"] };
/// Executions.
pub(crate) const EXECUTIONS: Table =
    Table { name: "executions", record: "execution", fixed: &["id", "session_id", "created_at"] };

/// Code contexts.
pub(crate) const CONTEXTS: Table =
    Table { name: "contexts", record: "context", fixed: &["id", "session_id", "created_at"] };

/// Audited network attempts; never updated (the id is the database's).
pub(crate) const NETWORK_ATTEMPTS: Table =
    Table { name: "network_attempts", record: "network attempt", fixed: &["id"] };

/// Warm-pool sandboxes.
pub(crate) const POOL_SANDBOXES: Table =
    Table { name: "pool_sandboxes", record: "pool sandbox", fixed: &["id", "template_id", "created_at"] };

/// A value bound to a `?` placeholder: the three column kinds both dialects share.
pub(crate) enum Arg {
    /// Text (ids, names, JSON).
    Text(Option<String>),
    /// Integers, booleans (0/1) and timestamps (epoch milliseconds).
    Int(Option<i64>),
    /// Floating point.
    Real(Option<f64>),
}

/// `From` conversions into [`Arg`], one line each.
macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr,)*) => {
        $(impl From<$t> for Arg {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    &str => |v| Arg::Text(Some(v.to_owned())),
    &String => |v| Arg::Text(Some(v.clone())),
    &Option<String> => |v| Arg::Text(v.clone()),
    u32 => |v| Arg::Int(Some(v.into())),
    Option<i32> => |v| Arg::Int(v.map(i64::from)),
    bool => |v| Arg::Int(Some(v.into())),
    f64 => |v| Arg::Real(Some(v)),
    Option<f64> => |v| Arg::Real(v),
    CpuQuantity => |v| Arg::Text(Some(v.to_string())),
    MemoryQuantity => |v| Arg::Text(Some(v.to_string())),
    InstallStatus => |v| Arg::Text(Some(v.as_str().to_owned())),
    DateTime<Utc> => |v| Arg::Int(Some(v.timestamp_millis())),
    Option<DateTime<Utc>> => |v| Arg::Int(v.map(|t| t.timestamp_millis())),
}

/// A record's columns and values, in the order they are bound.
pub(crate) type Fields = Vec<(&'static str, Arg)>;

/// `value` as JSON text, for a TEXT column.
fn json(table: &'static str, column: &str, value: &impl Serialize) -> Result<Arg> {
    let text = serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt { table, message: format!("cannot encode {column}: {e}") })?;
    Ok(Arg::Text(Some(text)))
}

/// [`json`] for an optional value: `None` is SQL NULL.
fn opt_json(table: &'static str, column: &str, value: Option<&impl Serialize>) -> Result<Arg> {
    value.map_or(Ok(Arg::Text(None)), |v| json(table, column, v))
}

/// The columns of an API key.
pub(crate) fn api_key_fields(k: &ApiKey) -> Fields {
    vec![
        ("id", (&k.id).into()),
        ("name", (&k.name).into()),
        ("prefix", (&k.prefix).into()),
        ("key_hash", (&k.key_hash).into()),
        ("is_admin", k.is_admin.into()),
        ("created_at", k.created_at.into()),
        ("revoked_at", k.revoked_at.into()),
    ]
}

/// The columns of a template.
pub(crate) fn template_fields(t: &Template) -> Result<Fields> {
    let table = TEMPLATES.name;
    Ok(vec![
        ("id", (&t.id).into()),
        ("name", (&t.name).into()),
        ("image_url", (&t.image_url).into()),
        ("runtime_type", (&t.language_runtime).into()),
        ("default_cpu_cores", t.default_cpu_cores.into()),
        ("default_memory_mb", t.default_memory_mb.into()),
        ("default_disk_mb", t.default_disk_mb.into()),
        ("default_timeout_sec", t.default_timeout_sec.into()),
        ("default_env_vars", json(table, "default_env_vars", &t.default_env_vars)?),
        ("pre_installed_packages", json(table, "pre_installed_packages", &t.pre_installed_packages)?),
        ("is_active", t.is_active.into()),
        ("status", t.status.as_str().into()),
        ("image_pull", opt_json(table, "image_pull", t.image_pull.as_ref())?),
        ("created_at", t.created_at.into()),
        ("updated_at", t.updated_at.into()),
    ])
}

/// The columns of a template's image status and pull.
pub(crate) fn template_image_fields(status: TemplateStatus, pull: Option<&ImagePull>) -> Result<Fields> {
    Ok(vec![
        ("status", status.as_str().into()),
        ("image_pull", opt_json(TEMPLATES.name, "image_pull", pull)?),
    ])
}

/// The columns of a session.
pub(crate) fn session_fields(s: &Session) -> Result<Fields> {
    let table = SESSIONS.name;
    Ok(vec![
        ("id", (&s.id).into()),
        ("owner_key_id", (&s.owner_key_id).into()),
        ("client_id", (&s.client_id).into()),
        ("template_id", (&s.template_id).into()),
        ("status", s.status.as_str().into()),
        ("cpu", s.cpu.into()),
        ("memory", s.memory.into()),
        ("disk", s.disk.into()),
        ("timeout_sec", s.timeout_sec.into()),
        ("env_vars", json(table, "env_vars", &s.env_vars)?),
        ("metadata", json(table, "metadata", &s.metadata)?),
        ("network", json(table, "network", &s.network)?),
        ("runtime_type", (&s.runtime_backend).into()),
        ("sandbox_name", (&s.sandbox_name).into()),
        ("container_id", (&s.container_id).into()),
        ("runtime_node", (&s.runtime_node).into()),
        ("workspace_path", (&s.workspace_path).into()),
        ("error_message", (&s.error_message).into()),
        ("python_package_index_url", (&s.python_package_index_url).into()),
        ("requested_dependencies", json(table, "requested_dependencies", &s.requested_dependencies)?),
        ("installed_dependencies", json(table, "installed_dependencies", &s.installed_dependencies)?),
        ("dependency_install_status", s.dependency_install_status.into()),
        ("dependency_install_error", (&s.dependency_install_error).into()),
        ("dependency_install_error_code", (&s.dependency_install_error_code).into()),
        ("fail_on_dependency_error", s.fail_on_dependency_error.into()),
        ("dependency_install_started_at", s.dependency_install_started_at.into()),
        ("dependency_install_completed_at", s.dependency_install_completed_at.into()),
        ("created_at", s.created_at.into()),
        ("updated_at", s.updated_at.into()),
        ("completed_at", s.completed_at.into()),
        ("last_activity_at", s.last_activity_at.into()),
    ])
}

/// The columns of an execution.
pub(crate) fn execution_fields(e: &Execution) -> Result<Fields> {
    let table = EXECUTIONS.name;
    Ok(vec![
        ("id", (&e.id).into()),
        ("session_id", (&e.session_id).into()),
        ("status", e.status.as_str().into()),
        ("language", e.language.as_str().into()),
        ("code", (&e.code).into()),
        ("event", opt_json(table, "event", e.event.as_ref())?),
        ("timeout_sec", e.timeout_sec.into()),
        ("exit_code", e.exit_code.into()),
        ("error_message", (&e.error_message).into()),
        ("stdout", (&e.stdout).into()),
        ("stderr", (&e.stderr).into()),
        ("return_value", opt_json(table, "return_value", e.return_value.as_ref())?),
        ("artifacts", json(table, "artifacts", &e.artifacts)?),
        ("metrics", opt_json(table, "metrics", e.metrics.as_ref())?),
        ("retry_count", e.retry_count.into()),
        ("created_at", e.created_at.into()),
        ("started_at", e.started_at.into()),
        ("completed_at", e.completed_at.into()),
        ("execution_time", e.execution_time.into()),
        ("context_id", (&e.context_id).into()),
        ("results", json(table, "results", &e.results)?),
        ("results_truncated", e.results_truncated.into()),
        ("error", opt_json(table, "error", e.error.as_ref())?),
    ])
}

/// The columns of a code context; contexts are never updated.
pub(crate) fn context_fields(c: &Context) -> Result<Fields> {
    Ok(vec![
        ("id", (&c.id).into()),
        ("session_id", (&c.session_id).into()),
        ("language", c.language.as_str().into()),
        ("cwd", (&c.cwd).into()),
        ("env_vars", json(CONTEXTS.name, "env_vars", &c.env_vars)?),
        ("created_at", c.created_at.into()),
    ])
}

/// Reads a row of `idempotency_keys`.
pub(crate) fn idempotency_from_row(row: &AnyRow) -> Result<IdempotencyRecord> {
    let r = Cols { row, table: "idempotency_keys" };
    Ok(IdempotencyRecord {
        owner_key_id: r.text("owner_key_id")?,
        key: r.text("idem_key")?,
        operation: r.text("operation")?,
        fingerprint: r.text("fingerprint")?,
        resource_id: r.opt_text("resource_id")?,
        created_at: r.time("created_at")?,
    })
}

/// Reads a row a code context was written to.
pub(crate) fn context_from_row(row: &AnyRow) -> Result<Context> {
    let r = Cols { row, table: CONTEXTS.name };
    Ok(Context {
        id: r.text("id")?,
        session_id: r.text("session_id")?,
        language: r.parsed("language", |s| s.parse::<Language>().ok())?,
        cwd: r.opt_text("cwd")?,
        env_vars: r.json("env_vars")?,
        created_at: r.time("created_at")?,
    })
}

/// The columns of a pool sandbox.
pub(crate) fn pool_sandbox_fields(p: &PoolSandbox) -> Fields {
    vec![
        ("id", (&p.id).into()),
        ("template_id", (&p.template_id).into()),
        ("state", p.state.as_str().into()),
        ("container_id", (&p.container_id).into()),
        ("sandbox_name", (&p.sandbox_name).into()),
        ("created_at", p.created_at.into()),
        ("ready_at", p.ready_at.into()),
        ("claimed_at", p.claimed_at.into()),
    ]
}

/// Reads a row a pool sandbox was written to.
pub(crate) fn pool_sandbox_from_row(row: &AnyRow) -> Result<PoolSandbox> {
    let r = Cols { row, table: POOL_SANDBOXES.name };
    Ok(PoolSandbox {
        id: r.text("id")?,
        template_id: r.text("template_id")?,
        state: r.parsed("state", PoolState::parse)?,
        container_id: r.opt_text("container_id")?,
        sandbox_name: r.opt_text("sandbox_name")?,
        created_at: r.time("created_at")?,
        ready_at: r.opt_time("ready_at")?,
        claimed_at: r.opt_time("claimed_at")?,
    })
}

/// Reads a row an API key was written to.
pub(crate) fn api_key_from_row(row: &AnyRow) -> Result<ApiKey> {
    let r = Cols { row, table: API_KEYS.name };
    Ok(ApiKey {
        id: r.text("id")?,
        name: r.text("name")?,
        prefix: r.text("prefix")?,
        key_hash: r.text("key_hash")?,
        is_admin: r.flag("is_admin")?,
        created_at: r.time("created_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

/// Reads a row a template was written to.
pub(crate) fn template_from_row(row: &AnyRow) -> Result<Template> {
    let r = Cols { row, table: TEMPLATES.name };
    Ok(Template {
        id: r.text("id")?,
        name: r.text("name")?,
        image_url: r.text("image_url")?,
        language_runtime: r.text("runtime_type")?,
        default_cpu_cores: r.get("default_cpu_cores")?,
        default_memory_mb: r.int("default_memory_mb")?,
        default_disk_mb: r.int("default_disk_mb")?,
        default_timeout_sec: r.int("default_timeout_sec")?,
        default_env_vars: r.json("default_env_vars")?,
        pre_installed_packages: r.json("pre_installed_packages")?,
        is_active: r.flag("is_active")?,
        status: r.parsed("status", TemplateStatus::parse)?,
        image_pull: r.opt_json("image_pull")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// The columns of an audited network attempt (its id is the database's).
pub(crate) fn network_attempt_fields(a: &NetworkAttempt) -> Fields {
    vec![
        ("session_id", (&a.session_id).into()),
        ("execution_id", (&a.execution_id).into()),
        ("kind", (&a.kind).into()),
        ("host", (&a.host).into()),
        ("port", Arg::Int(a.port.map(i64::from))),
        ("address", (&a.address).into()),
        ("decision", (&a.decision).into()),
        ("reason", (&a.reason).into()),
        ("bytes_up", Arg::Int(Some(i64::try_from(a.bytes_up).unwrap_or(i64::MAX)))),
        ("bytes_down", Arg::Int(Some(i64::try_from(a.bytes_down).unwrap_or(i64::MAX)))),
        ("started_at", a.started_at.into()),
        ("duration_ms", Arg::Int(Some(i64::try_from(a.duration_ms).unwrap_or(i64::MAX)))),
    ]
}

/// Reads a row a network attempt was written to.
pub(crate) fn network_attempt_from_row(row: &AnyRow) -> Result<NetworkAttempt> {
    let r = Cols { row, table: NETWORK_ATTEMPTS.name };
    Ok(NetworkAttempt {
        session_id: r.text("session_id")?,
        execution_id: r.opt_text("execution_id")?,
        kind: r.text("kind")?,
        host: r.text("host")?,
        port: r.opt_int("port")?,
        address: r.opt_text("address")?,
        decision: r.text("decision")?,
        reason: r.text("reason")?,
        bytes_up: r.int("bytes_up")?,
        bytes_down: r.int("bytes_down")?,
        started_at: r.time("started_at")?,
        duration_ms: r.int("duration_ms")?,
    })
}

/// Reads a row a session was written to.
pub(crate) fn session_from_row(row: &AnyRow) -> Result<Session> {
    let r = Cols { row, table: SESSIONS.name };
    Ok(Session {
        id: r.text("id")?,
        owner_key_id: r.text("owner_key_id")?,
        client_id: r.opt_text("client_id")?,
        template_id: r.text("template_id")?,
        status: r.parsed("status", SessionStatus::parse)?,
        cpu: r.parsed("cpu", |s| s.parse().ok())?,
        memory: r.parsed("memory", |s| s.parse().ok())?,
        disk: r.parsed("disk", |s| s.parse().ok())?,
        timeout_sec: r.int("timeout_sec")?,
        env_vars: r.json("env_vars")?,
        metadata: r.opt_json("metadata")?.unwrap_or_default(),
        network: r.opt_json("network")?.unwrap_or_default(),
        runtime_backend: r.text("runtime_type")?,
        sandbox_name: r.opt_text("sandbox_name")?,
        container_id: r.opt_text("container_id")?,
        runtime_node: r.opt_text("runtime_node")?,
        workspace_path: r.opt_text("workspace_path")?,
        error_message: r.opt_text("error_message")?,
        python_package_index_url: r.text("python_package_index_url")?,
        requested_dependencies: r.json("requested_dependencies")?,
        installed_dependencies: r.json("installed_dependencies")?,
        dependency_install_status: r.parsed("dependency_install_status", InstallStatus::parse)?,
        dependency_install_error: r.opt_text("dependency_install_error")?,
        dependency_install_error_code: r.opt_text("dependency_install_error_code")?,
        fail_on_dependency_error: r.flag("fail_on_dependency_error")?,
        dependency_install_started_at: r.opt_time("dependency_install_started_at")?,
        dependency_install_completed_at: r.opt_time("dependency_install_completed_at")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        completed_at: r.opt_time("completed_at")?,
        last_activity_at: r.opt_time("last_activity_at")?,
    })
}

/// Reads a row an execution was written to.
pub(crate) fn execution_from_row(row: &AnyRow) -> Result<Execution> {
    let r = Cols { row, table: EXECUTIONS.name };
    Ok(Execution {
        id: r.text("id")?,
        session_id: r.text("session_id")?,
        status: r.parsed("status", ExecutionStatus::parse)?,
        language: r.parsed("language", |s| s.parse::<Language>().ok())?,
        code: r.text("code")?,
        event: r.opt_json("event")?,
        timeout_sec: r.int("timeout_sec")?,
        exit_code: r.opt_int("exit_code")?,
        error_message: r.opt_text("error_message")?,
        stdout: r.opt_text("stdout")?,
        stderr: r.opt_text("stderr")?,
        return_value: r.opt_json("return_value")?,
        artifacts: r.json("artifacts")?,
        metrics: r.opt_json("metrics")?,
        retry_count: r.int("retry_count")?,
        created_at: r.time("created_at")?,
        started_at: r.opt_time("started_at")?,
        completed_at: r.opt_time("completed_at")?,
        execution_time: r.get("execution_time")?,
        context_id: r.opt_text("context_id")?,
        // Written by every release that has the column; MySQL's may be NULL on older rows.
        results: r.opt_json("results")?.unwrap_or_default(),
        results_truncated: r.flag("results_truncated")?,
        error: r.opt_json("error")?,
    })
}

/// Typed access to the columns of a row; anything unreadable is [`StoreError::Corrupt`].
pub(crate) struct Cols<'r> {
    /// The row.
    pub row: &'r AnyRow,
    /// Its table, for errors.
    pub table: &'static str,
}

impl Cols<'_> {
    fn corrupt(&self, column: &str, message: impl Display) -> StoreError {
        StoreError::Corrupt { table: self.table, message: format!("column {column}: {message}") }
    }

    /// A value sqlx decodes as it is.
    pub fn get<'a, T: Decode<'a, Any> + Type<Any>>(&'a self, column: &str) -> Result<T> {
        self.row.try_get(column).map_err(|e| self.corrupt(column, e))
    }

    /// Text, or `None` for NULL. MySQL's TEXT columns reach the Any driver as blobs, so those
    /// are read as bytes and checked to be UTF-8.
    pub fn opt_text(&self, column: &str) -> Result<Option<String>> {
        let raw = self.row.try_get_raw(column).map_err(|e| self.corrupt(column, e))?;
        if raw.is_null() {
            Ok(None)
        } else if raw.type_info().kind() == AnyTypeInfoKind::Blob {
            let bytes: Vec<u8> = self.get(column)?;
            String::from_utf8(bytes).map(Some).map_err(|e| self.corrupt(column, e))
        } else {
            self.get(column)
        }
    }

    /// Text that must not be NULL.
    pub fn text(&self, column: &str) -> Result<String> {
        self.opt_text(column)?.ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    /// An integer that must fit `T`, or `None` for NULL.
    pub fn opt_int<T: TryFrom<i64, Error: Display>>(&self, column: &str) -> Result<Option<T>> {
        let value: Option<i64> = self.get(column)?;
        value.map(|v| T::try_from(v).map_err(|e| self.corrupt(column, e))).transpose()
    }

    /// An integer that must fit `T` and not be NULL.
    pub fn int<T: TryFrom<i64, Error: Display>>(&self, column: &str) -> Result<T> {
        self.opt_int(column)?.ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    /// A boolean stored as 0/1.
    fn flag(&self, column: &str) -> Result<bool> {
        Ok(self.int::<i64>(column)? != 0)
    }

    /// A timestamp stored as epoch milliseconds, or `None` for NULL.
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.opt_int::<i64>(column)?
            .map(|ms| {
                DateTime::from_timestamp_millis(ms).ok_or_else(|| self.corrupt(column, "bad timestamp"))
            })
            .transpose()
    }

    /// A timestamp that must not be NULL.
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        self.opt_time(column)?.ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    /// A JSON value, or `None` for NULL (a stored JSON `null` reads back as `Some`).
    fn opt_json<T: DeserializeOwned>(&self, column: &str) -> Result<Option<T>> {
        self.opt_text(column)?
            .map(|text| serde_json::from_str(&text).map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    /// A JSON value that must not be NULL.
    fn json<T: DeserializeOwned>(&self, column: &str) -> Result<T> {
        self.opt_json(column)?.ok_or_else(|| self.corrupt(column, "unexpected NULL"))
    }

    /// A name `parse` must know (a status, a language).
    fn parsed<T>(&self, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
        let text = self.text(column)?;
        parse(&text).ok_or_else(|| self.corrupt(column, format_args!("unknown value {text:?}")))
    }
}
