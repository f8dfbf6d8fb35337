//! `/api/v1/templates`: list and read for every key; create, update, delete for admin keys.

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::{Body, PathParam, Query, page};
use crate::api::types::{
    CreateTemplateRequest, DeletedResponse, PageQuery, TemplateResponse, UpdateTemplateRequest,
};
use crate::caller::Caller;
use crate::service::templates::TemplateChanges;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use sandbox_core::model::TemplateStatus;

/// Creates a template (admin). When the runtime has the image, the template is `ready` (201);
/// when the runtime may pull it (Docker with `templates.pull_images`), the template is stored as
/// `pulling` (202) and the image is pulled in the background: poll the template for its
/// `status` and `image_pull` progress.
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", security(("bearer" = [])),
    request_body = CreateTemplateRequest,
    responses(
        (status = 201, description = "Created, `ready`", body = TemplateResponse),
        (status = 202, description = "Created, `pulling`: the image is being pulled", body = TemplateResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "Not an admin key", body = ErrorBody),
        (status = 409, description = "The id exists (`template_exists`)", body = ErrorBody),
        (status = 422, description = "Invalid field, among them an invalid image reference (`validation_error`), or an image the runtime does not have while pulling is off (`template_image_missing`)", body = ErrorBody),
        (status = 503, description = "The runtime did not answer", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTemplateRequest>,
) -> Result<(StatusCode, Json<TemplateResponse>), ApiError> {
    let changes = TemplateChanges {
        name: Some(req.name),
        image_url: Some(req.image_url),
        default_cpu_cores: req.default_cpu_cores,
        default_memory_mb: req.default_memory_mb,
        default_disk_mb: req.default_disk_mb,
        default_timeout_sec: req.default_timeout,
        default_env_vars: req.default_env_vars,
        pre_installed_packages: req.pre_installed_packages,
        is_active: None,
    };
    let t = state.templates.create(&caller, req.id, req.runtime_type, changes).await?;
    let status = match t.status {
        TemplateStatus::Ready => StatusCode::CREATED,
        TemplateStatus::Pulling | TemplateStatus::Failed => StatusCode::ACCEPTED,
    };
    Ok((status, Json(t.into())))
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
    let page = state.templates.list(limit, offset).await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(page.total));
    Ok((headers, Json(page.items.into_iter().map(Into::into).collect())))
}

/// One template, with its image's `status` and the progress of its pull.
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
    Ok(Json(state.templates.get(&id).await?.into()))
}

/// Changes a template (admin); sessions already created keep what they got. A new `image_url`
/// (or the same one again, for a template that is not `ready`) is checked as on create and may
/// leave the template `pulling`.
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
        (status = 422, description = "Invalid field, among them an invalid image reference (`validation_error`), or an image the runtime does not have while pulling is off (`template_image_missing`)", body = ErrorBody),
        (status = 503, description = "The runtime did not answer", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    Body(req): Body<UpdateTemplateRequest>,
) -> Result<Json<TemplateResponse>, ApiError> {
    let changes = TemplateChanges {
        name: req.name,
        image_url: req.image_url,
        default_cpu_cores: req.default_cpu_cores,
        default_memory_mb: req.default_memory_mb,
        default_disk_mb: req.default_disk_mb,
        default_timeout_sec: req.default_timeout,
        default_env_vars: req.default_env_vars,
        pre_installed_packages: None,
        is_active: req.is_active,
    };
    Ok(Json(state.templates.update(&caller, &id, changes).await?.into()))
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
    state.templates.delete(&caller, &id).await?;
    Ok(Json(DeletedResponse { message: format!("template {id} deleted"), id, deleted: true }))
}
