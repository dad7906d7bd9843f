//! The one conditional update every writable resource goes through: read the entity, check the
//! client's precondition and read-only fields, compute and validate the new entity, and write it
//! with compare-and-swap on the etag it was read with. The compare-and-swap is one statement in
//! the database, so it holds between server processes sharing one database too; the turns
//! (`crate::turns`) only keep this process's writers of one entity from spoiling each other's
//! swaps.

use std::future::Future;

use flotilla_model::validate::{check_read_only, merge_patch};
use flotilla_store::{Entity, Result as StoreResult, StoreError};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An entity the API updates conditionally, as it is stored.
pub(super) trait Resource: Sized + Send + Sync {
    /// The collection's path segment (`devices`): with the id it names whose writers take turns.
    const COLLECTION: &'static str;
    /// Which entity it is, as refusals name it.
    const ENTITY: Entity;
    /// Fields a request may repeat but not change.
    const READ_ONLY: &'static [&'static str];
    /// The entity after a change, ready to write (for most resources the entity itself).
    type Changed: Send + Sync;

    fn load(state: &AppState, id: &str) -> impl Future<Output = StoreResult<Option<Self>>> + Send;
    fn etag(&self) -> &str;
    /// The document a merge patch applies to and read-only fields are checked against.
    fn document(&self, state: &AppState) -> Value;
    /// Validates the document a request makes of `current` into the entity to write.
    fn from_document(
        state: &AppState,
        id: &str,
        document: &Value,
        current: &Self,
    ) -> impl Future<Output = ApiResult<Self::Changed>> + Send;
    /// Writes `changed` if the entity's etag is still `expected`; `false` when another writer
    /// came first.
    fn replace(
        state: &AppState,
        changed: &Self::Changed,
        expected: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// A resource a PUT may create.
pub(super) trait Creatable: Resource<Changed = Self> {
    /// Inserts the entity; `Conflict` when another writer created it first.
    fn insert(&self, state: &AppState) -> impl Future<Output = StoreResult<()>> + Send;
}

/// PATCH: applies a JSON merge patch to the entity, under the client's etag if it sent one.
pub(super) async fn patch_resource<R: Resource>(
    state: &AppState,
    id: &str,
    expected: Option<&str>,
    patch: &Value,
) -> ApiResult<R::Changed> {
    update_resource::<R>(state, id, expected, patch, |mut current, patch| {
        merge_patch(&mut current, patch);
        current
    })
    .await
}

/// PUT over an entity that must exist: the request's document replaces the current one.
pub(super) async fn replace_resource<R: Resource>(
    state: &AppState,
    id: &str,
    document: &Value,
) -> ApiResult<R::Changed> {
    update_resource::<R>(state, id, None, document, |_, document| document.clone()).await
}

async fn update_resource<R: Resource>(
    state: &AppState,
    id: &str,
    expected: Option<&str>,
    request: &Value,
    apply: fn(Value, &Value) -> Value,
) -> ApiResult<R::Changed> {
    read_modify_write(state, entity::<R>(id), || async {
        let current = R::load(state, id)
            .await?
            .ok_or_else(|| not_found::<R>(id))?;
        let document = apply(
            checked_document(state, &current, expected, request)?,
            request,
        );
        let changed = R::from_document(state, id, &document, &current).await?;
        Ok(R::replace(state, &changed, current.etag())
            .await?
            .then_some(changed))
    })
    .await
}

/// PUT that creates the entity or replaces an existing one: `build` makes the entity to write
/// from the current one, if any, out of a body validated beforehand.
pub(super) async fn put_resource<R: Creatable>(
    state: &AppState,
    id: &str,
    expected: Option<&str>,
    body: &Value,
    build: impl Fn(Option<&R>) -> ApiResult<R> + Sync,
) -> ApiResult<R> {
    read_modify_write(state, entity::<R>(id), || async {
        let Some(current) = R::load(state, id).await? else {
            let created = build(None)?;
            return match created.insert(state).await {
                Ok(()) => Ok(Some(created)),
                Err(StoreError::Conflict { .. }) => Ok(None),
                Err(other) => Err(other.into()),
            };
        };
        checked_document(state, &current, expected, body)?;
        let replacement = build(Some(&current))?;
        Ok(R::replace(state, &replacement, current.etag())
            .await?
            .then_some(replacement))
    })
    .await
}

fn entity<R: Resource>(id: &str) -> String {
    format!("{}/{id}", R::COLLECTION)
}

/// 404: the entity does not exist.
pub(super) fn not_found<R: Resource>(id: &str) -> ApiError {
    ApiError::missing(R::ENTITY, id)
}

/// The current document, once the client's etag (412) and the read-only fields it sent (400)
/// are checked.
fn checked_document<R: Resource>(
    state: &AppState,
    current: &R,
    expected: Option<&str>,
    request: &Value,
) -> ApiResult<Value> {
    check_etag(expected, current.etag())?;
    let document = current.document(state);
    check_read_only(&document, request, R::READ_ONLY)?;
    Ok(document)
}

/// Runs a read-modify-write of one entity (`entity` names it, e.g. `devices/{id}`) until it
/// applies: `attempt` reads, checks and writes with compare-and-swap, and answers `None` when
/// another writer changed the entity between its read and its write. Without a precondition the
/// next attempt applies the change to what that writer left (last writer wins), so a merge patch
/// is never refused for contention; with one, the next attempt reads the new etag and answers
/// 412. Every retry follows another writer's success, and this process's writers of the entity
/// take turns, so retries stay few.
pub(super) async fn read_modify_write<T, Attempt>(
    state: &AppState,
    entity: String,
    mut attempt: impl FnMut() -> Attempt,
) -> ApiResult<T>
where
    Attempt: Future<Output = ApiResult<Option<T>>>,
{
    let _turn = state.turns.take(entity).await;
    loop {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
}

/// 412 unless the client's etag (if it sent one) is the current one.
fn check_etag(expected: Option<&str>, current: &str) -> Result<(), ApiError> {
    match expected {
        Some(expected) if expected != current => Err(ApiError::precondition_failed(format!(
            "The etag {expected} does not match the current etag {current}; read the resource again and retry."
        ))),
        _ => Ok(()),
    }
}
