//! `/chat/Dialog…` (seed 002 "Dialog model", REST reference §8.3, §10.2): list with the
//! search operators, create (a private dialog is one per pair), update (`push_all`/`pull_all`
//! occupants, name, photo, custom parameters), delete (for me, or `force=1` by the owner; the
//! multi-id result shape), and per-user notification settings. Dialog objects are never
//! wrapped (`{"_id": …}`, not `{"dialog": …}`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{empty_ok, ApiError, AppState, Params};
use crate::auth::Caller;
use crate::chat::dialogs::{parse_user_ids, DialogUpdate, NewDialog};
use crate::chat::model::{Dialog, DialogId, DialogType, ObjectId};
use crate::chat::query::DialogQuery;
use crate::chat::Chat;
use crate::clock;
use crate::model::UserId;

/// The user a chat request acts for: chat needs a user session.
pub fn chat_user(caller: &Caller) -> Result<UserId, ApiError> {
    caller.user_id().ok_or_else(|| {
        ApiError::Forbidden("Chat requires a user session (POST /login.json first)".into())
    })
}

/// The dialog object of QuickBlox responses, as `unread` user sees it.
pub fn dialog_json(chat: &Chat, dialog: &Dialog, unread: i64) -> Value {
    let last = dialog.last_message.as_ref();
    let mut object = json!({
        "_id": dialog.id.as_str(),
        "user_id": dialog.owner.0,
        "type": dialog.kind.code(),
        "name": dialog.name,
        "photo": dialog.photo,
        "occupants_ids": dialog.occupants.iter().map(|u| u.0).collect::<Vec<_>>(),
        "xmpp_room_jid": chat.room_jid(dialog),
        "is_join_required": i64::from(dialog.is_join_required),
        "last_message": last.and_then(|l| l.text.clone()),
        "last_message_date_sent": last.map(|l| l.date_sent),
        "last_message_user_id": last.map(|l| l.user.0),
        "last_message_id": last.map(|l| l.id.as_str().to_string()),
        "unread_messages_count": unread,
        "created_at": clock::iso8601(dialog.created_at),
        "updated_at": clock::iso8601(dialog.updated_at),
    });
    if let (Some(data), Value::Object(map)) = (&dialog.data, &mut object) {
        map.insert("data".into(), Value::Object(data.clone()));
    }
    object
}

/// `GET /chat/Dialog.json`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let query = DialogQuery::parse(params.pairs())?;
    let (views, total) = state
        .chat
        .store
        .list_dialogs(caller.app.id, user, &query)
        .await?;
    if query.page.count {
        return Ok(Json(json!({ "items": { "count": total } })));
    }
    let items: Vec<Value> = views
        .iter()
        .map(|view| dialog_json(&state.chat, &view.dialog, view.unread))
        .collect();
    Ok(Json(json!({
        "total_entries": total,
        "skip": query.page.skip,
        "limit": query.page.limit,
        "items": items,
    })))
}

/// `POST /chat/Dialog.json`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let user = chat_user(&caller)?;
    let kind = match params.get("type").map(str::trim) {
        None | Some("") => return Err(ApiError::invalid("type", "can't be blank")),
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .and_then(DialogType::from_code)
            .ok_or_else(|| ApiError::invalid("type", "must be 1, 2 or 3"))?,
    };
    let occupants = match params.get("occupants_ids") {
        Some(raw) => parse_user_ids("occupants_ids", raw)?,
        None => Vec::new(),
    };
    if kind != DialogType::PublicGroup && occupants.iter().all(|o| *o == user) {
        return Err(ApiError::invalid("occupants_ids", "can't be blank"));
    }
    let new = NewDialog {
        kind,
        name: params.get("name").map(str::to_string),
        photo: params
            .get("photo")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        occupants,
        data: custom_data(&params)?,
        is_join_required: flag(&params, "is_join_required")?.unwrap_or(false),
    };
    let now = clock::unix_now();
    let (dialog, _created) = state
        .chat
        .create_dialog(caller.app.id, user, new, now)
        .await?;
    let unread = state.chat.store.unread_in(&dialog.id, user).await?;
    Ok((
        StatusCode::CREATED,
        Json(dialog_json(&state.chat, &dialog, unread)),
    )
        .into_response())
}

/// `PUT /chat/Dialog/{id}.json`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let ids = ids_from_file(&file, "_id")?;
    let [id] = ids.as_slice() else {
        return Err(ApiError::invalid("_id", "update one dialog at a time"));
    };
    let occupants = |op: &str| -> Result<Vec<UserId>, ApiError> {
        let mut users = Vec::new();
        for key in [
            format!("{op}[occupants_ids]"),
            format!("{op}[occupants_ids][]"),
        ] {
            if let Some(raw) = params.get(&key) {
                users.extend(parse_user_ids("occupants_ids", raw)?);
            }
        }
        Ok(users)
    };
    let update = DialogUpdate {
        name: params.get("name").map(str::to_string),
        photo: params.get("photo").map(str::to_string),
        data: custom_data(&params)?,
        is_join_required: flag(&params, "is_join_required")?,
        push: occupants("push_all")?,
        pull: occupants("pull_all")?,
    };
    let dialog = state
        .chat
        .update_dialog(caller.app.id, user, id, update, clock::unix_now())
        .await?;
    let unread = state.chat.store.unread_in(&dialog.id, user).await?;
    Ok(Json(dialog_json(&state.chat, &dialog, unread)))
}

/// `DELETE /chat/Dialog/{id1},{id2}….json`, body `force=1` to delete for everyone.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let user = chat_user(&caller)?;
    let ids = ids_from_file(&file, "_id")?;
    let force = flag(&params, "force")?.unwrap_or(false);
    let report = state
        .chat
        .delete_dialogs(caller.app.id, user, &ids, force, clock::unix_now())
        .await?;
    if let [id] = ids.as_slice() {
        if report.not_found.contains(id) {
            return Err(ApiError::NotFound(format!("Dialog {id} not found")));
        }
        if report.forbidden.contains(id) {
            return Err(ApiError::forbidden());
        }
        return Ok(empty_ok());
    }
    let list =
        |ids: &[DialogId]| json!({ "ids": ids.iter().map(|i| i.as_str()).collect::<Vec<_>>() });
    Ok(Json(json!({
        "SuccessfullyDeleted": list(&report.deleted),
        "WrongPermissions": list(&report.forbidden),
        "NotFound": list(&report.not_found),
    }))
    .into_response())
}

/// `GET /chat/Dialog/{id}/notifications.json`.
pub async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let id = parse_id(&id, "_id")?;
    state.chat.readable_dialog(caller.app.id, user, &id).await?;
    let enabled = state.chat.store.dialog_notifications(&id, user).await?;
    Ok(Json(
        json!({ "notifications": { "enabled": i64::from(enabled) } }),
    ))
}

/// `PUT /chat/Dialog/{id}/notifications.json` with `enabled=0|1`.
pub async fn set_notifications(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let id = parse_id(&id, "_id")?;
    let enabled =
        flag(&params, "enabled")?.ok_or_else(|| ApiError::invalid("enabled", "can't be blank"))?;
    state.chat.readable_dialog(caller.app.id, user, &id).await?;
    state
        .chat
        .store
        .set_dialog_notifications(&id, user, enabled)
        .await?;
    Ok(Json(
        json!({ "notifications": { "enabled": i64::from(enabled) } }),
    ))
}

/// `data[class_name]` and `data[field]` custom parameters. From a JSON body the values keep
/// their JSON types; from a form they are strings. `class_name` is required with any field.
fn custom_data(params: &Params) -> Result<Option<Map<String, Value>>, ApiError> {
    let mut data = Map::new();
    match params.json().and_then(|j| j.get("data")) {
        Some(Value::Object(object)) => data = object.clone(),
        Some(Value::Null) | None => {
            for (key, value) in params.group("data") {
                if key.is_empty() || key.contains(['[', ']']) {
                    return Err(ApiError::invalid(
                        "data",
                        format!("{key:?} is not a field name"),
                    ));
                }
                data.insert(key.to_string(), Value::String(value.to_string()));
            }
        }
        Some(_) => return Err(ApiError::invalid("data", "must be an object")),
    }
    if data.is_empty() {
        return Ok(None);
    }
    match data.get("class_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => Ok(Some(data)),
        _ => Err(ApiError::invalid("data", "class_name can't be blank")),
    }
}

/// A 0/1 (or true/false) parameter.
pub fn flag(params: &Params, key: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key).map(str::trim) {
        None => Ok(None),
        Some("1" | "true") => Ok(Some(true)),
        Some("0" | "false" | "") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(
            key,
            format!("must be 0 or 1, not {other:?}"),
        )),
    }
}

/// A 24-hex id from a path segment (`….json` stripped).
pub fn parse_id(text: &str, field: &str) -> Result<ObjectId, ApiError> {
    let text = text.strip_suffix(".json").unwrap_or(text);
    ObjectId::parse(text)
        .ok_or_else(|| ApiError::invalid(field, format!("{text:?} is not a valid id")))
}

/// `id1,id2.json` → the ids; one malformed id fails the whole request (nothing changes).
pub fn ids_from_file(file: &str, field: &str) -> Result<Vec<ObjectId>, ApiError> {
    let list = file.strip_suffix(".json").unwrap_or(file);
    let mut ids: Vec<ObjectId> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let id = parse_id(item, field)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        return Err(ApiError::invalid(field, "can't be blank"));
    }
    if ids.len() > crate::chat::query::MAX_LIMIT as usize {
        return Err(ApiError::invalid(field, "too many ids in one request"));
    }
    Ok(ids)
}
