//! `/api/v1/templates`: list and read for every key; create, update, delete for admin keys.

use crate::api::extract::{Body, PathParam, Query, page};
use crate::api::types::{
    CreateTemplateRequest, DeletedResponse, PageQuery, TemplateResponse, UpdateTemplateRequest,
};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::service::templates;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use chrono::Utc;
use sandbox_core::model::Template;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("template_not_found", format!("template {id} does not exist"))
}

/// Refuses an image the runtime does not have, so a template cannot promise sessions that will
/// never start.
async fn check_image(state: &AppState, image: &str) -> Result<(), ApiError> {
    let available = state
        .runtime
        .image_available(image)
        .await
        .map_err(|e| ApiError::unavailable("runtime_unavailable", e.to_string(), 5))?;
    if available {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "image_url",
            format!(
                "image {image} is not available to the runtime; build it (images/build.sh) or pull it first"
            ),
        ))
    }
}

/// Creates a template (admin).
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", security(("bearer" = [])),
    request_body = CreateTemplateRequest,
    responses(
        (status = 201, description = "Created", body = TemplateResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "The id exists", body = ErrorBody),
        (status = 422, description = "Invalid field, or an image the runtime does not have", body = ErrorBody),
        (status = 503, description = "The runtime did not answer", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTemplateRequest>,
) -> Result<(StatusCode, Json<TemplateResponse>), ApiError> {
    caller.require_admin()?;
    let now = Utc::now();
    let t = Template {
        id: req.id,
        name: req.name,
        image_url: req.image_url,
        runtime_type: req.runtime_type,
        default_cpu_cores: req.default_cpu_cores.unwrap_or(0.5),
        default_memory_mb: req.default_memory_mb.unwrap_or(512),
        default_disk_mb: req.default_disk_mb.unwrap_or(1024),
        default_timeout_sec: req.default_timeout.unwrap_or(300),
        default_env_vars: req.default_env_vars.unwrap_or_default(),
        pre_installed_packages: req.pre_installed_packages.unwrap_or_default(),
        is_active: true,
        created_at: now,
        updated_at: now,
    };
    templates::validate(&t)?;
    check_image(&state, &t.image_url).await?;
    match state.store.insert_template(&t).await {
        Err(sandbox_store::StoreError::Conflict(_)) => {
            Err(ApiError::conflict("template_exists", format!("template {} exists", t.id)))
        }
        Err(e) => Err(e.into()),
        Ok(()) => Ok((StatusCode::CREATED, Json(t.into()))),
    }
}

/// Lists templates by id. The body is an array (as in the Python control plane's API);
/// `X-Total-Count` has the total.
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "Templates", body = [TemplateResponse],
            headers(("X-Total-Count" = u64, description = "All templates"))),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 422, description = "Invalid paging", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<(HeaderMap, Json<Vec<TemplateResponse>>), ApiError> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let page = state.store.list_templates(limit, offset).await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(page.total));
    Ok((headers, Json(page.items.into_iter().map(Into::into).collect())))
}

/// One template.
#[utoipa::path(get, path = "/api/v1/templates/{template_id}", tag = "templates", security(("bearer" = [])),
    params(("template_id" = String, Path, description = "Template id")),
    responses(
        (status = 200, description = "The template", body = TemplateResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<TemplateResponse>, ApiError> {
    Ok(Json(state.store.template(&id).await?.ok_or_else(|| not_found(&id))?.into()))
}

/// Changes a template (admin); sessions already created keep what they got.
#[utoipa::path(put, path = "/api/v1/templates/{template_id}", tag = "templates", security(("bearer" = [])),
    params(("template_id" = String, Path, description = "Template id")),
    request_body = UpdateTemplateRequest,
    responses(
        (status = 200, description = "The updated template", body = TemplateResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 422, description = "Invalid field, or an image the runtime does not have", body = ErrorBody),
        (status = 503, description = "The runtime did not answer", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(req): Body<UpdateTemplateRequest>,
) -> Result<Json<TemplateResponse>, ApiError> {
    caller.require_admin()?;
    let mut t = state.store.template(&id).await?.ok_or_else(|| not_found(&id))?;
    if let Some(v) = req.name {
        t.name = v;
    }
    if let Some(v) = req.image_url {
        t.image_url = v;
    }
    if let Some(v) = req.default_cpu_cores {
        t.default_cpu_cores = v;
    }
    if let Some(v) = req.default_memory_mb {
        t.default_memory_mb = v;
    }
    if let Some(v) = req.default_disk_mb {
        t.default_disk_mb = v;
    }
    if let Some(v) = req.default_timeout {
        t.default_timeout_sec = v;
    }
    if let Some(v) = req.default_env_vars {
        t.default_env_vars = v;
    }
    if let Some(v) = req.is_active {
        t.is_active = v;
    }
    t.updated_at = Utc::now();
    templates::validate(&t)?;
    check_image(&state, &t.image_url).await?;
    if !state.store.update_template(&t).await? {
        return Err(not_found(&id));
    }
    Ok(Json(t.into()))
}

/// Deletes a template (admin); refused while sessions use it.
#[utoipa::path(delete, path = "/api/v1/templates/{template_id}", tag = "templates", security(("bearer" = [])),
    params(("template_id" = String, Path, description = "Template id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 404, description = "No such template", body = ErrorBody),
        (status = 409, description = "Sessions still use it", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    caller.require_admin()?;
    state.store.template(&id).await?.ok_or_else(|| not_found(&id))?;
    let live = state.store.count_live_sessions_of_template(&id).await?;
    if live > 0 {
        return Err(ApiError::conflict(
            "template_in_use",
            format!("{live} sessions still use template {id}"),
        ));
    }
    if !state.store.delete_template(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(DeletedResponse { id, deleted: true }))
}
