//! `/chat/Message…` (seed 002 "Message model", REST reference §8.4, §10.3): history pages
//! with the search operators (listed messages become read unless `mark_as_read=0`), history
//! injection and `send_to_chat=1`, read/delivered for one, several or all messages, text
//! edits, delete for me or `force=1`, and unread counts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::dialogs::{chat_user, flag, ids_from_file, parse_id};
use super::{empty_ok, ApiError, AppState, Params};
use crate::auth::Caller;
use crate::chat::model::{Dialog, DialogType, Mark, Message, MessageView, ObjectId};
use crate::chat::query::{parse_time, MessageQuery};
use crate::chat::Chat;
use crate::clock;
use crate::model::UserId;

/// Parameters of `POST /chat/Message` that are not custom fields.
const KNOWN: &[&str] = &[
    "chat_dialog_id",
    "recipient_id",
    "message",
    "attachments",
    "send_to_chat",
    "markable",
    "date_sent",
    "save_to_history",
    "dialog_id",
    "token",
];

/// Longest message text accepted, in bytes.
const MAX_TEXT: usize = 64 * 1024;

/// The message object of QuickBlox responses.
pub fn message_json(view: &MessageView, dialog_kind: DialogType) -> Value {
    let message = &view.message;
    let read = match (dialog_kind, message.recipient) {
        (DialogType::Private, Some(recipient)) => i64::from(view.read_ids.contains(&recipient)),
        _ => 0,
    };
    let mut object = Map::new();
    // Custom fields first, so the model's own fields win a clash.
    for (key, value) in &message.custom {
        object.insert(key.clone(), value.clone());
    }
    let fields = json!({
        "_id": message.id.as_str(),
        "chat_dialog_id": message.dialog.as_str(),
        "message": message.body,
        "date_sent": message.date_sent,
        "sender_id": message.sender.0,
        "recipient_id": message.recipient.map(|r| r.0),
        "attachments": message.attachments.iter().cloned().map(Value::Object).collect::<Vec<_>>(),
        "read_ids": view.read_ids.iter().map(|u| u.0).collect::<Vec<_>>(),
        "delivered_ids": view.delivered_ids.iter().map(|u| u.0).collect::<Vec<_>>(),
        "read": read,
        "markable": i64::from(message.markable),
        "created_at": clock::iso8601(message.created_at),
        "updated_at": clock::iso8601(message.updated_at),
    });
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object)
}

/// `GET /chat/Message.json?chat_dialog_id=…`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let id = params
        .get("chat_dialog_id")
        .ok_or_else(|| ApiError::invalid("chat_dialog_id", "can't be blank"))?;
    let id = parse_id(id, "chat_dialog_id")?;
    let query = MessageQuery::parse(params.pairs())?;
    let mark_as_read = flag(&params, "mark_as_read")?.unwrap_or(true);
    let dialog = state.chat.readable_dialog(caller.app.id, user, &id).await?;
    let (views, count) = state
        .chat
        .list_messages(&dialog, user, &query, mark_as_read)
        .await?;
    if query.page.count {
        return Ok(Json(json!({ "items": { "count": count } })));
    }
    let items: Vec<Value> = views.iter().map(|v| message_json(v, dialog.kind)).collect();
    Ok(Json(json!({
        "skip": query.page.skip,
        "limit": query.page.limit,
        "items": items,
    })))
}

/// `POST /chat/Message.json`: history injection, and real-time delivery with `send_to_chat=1`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let user = chat_user(&caller)?;
    let now = clock::unix_now();
    let chat = &state.chat;
    let dialog = match (params.get("chat_dialog_id"), params.get("recipient_id")) {
        (Some(id), _) if !id.trim().is_empty() => {
            let dialog = chat
                .readable_dialog(caller.app.id, user, &parse_id(id.trim(), "chat_dialog_id")?)
                .await?;
            if !Chat::may_write(&dialog, user) {
                return Err(ApiError::forbidden());
            }
            dialog
        }
        (_, Some(recipient)) => {
            let recipient = recipient
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .map(UserId)
                .ok_or_else(|| ApiError::invalid("recipient_id", "is not a user id"))?;
            if recipient == user {
                return Err(ApiError::invalid("recipient_id", "can't be yourself"));
            }
            chat.private_dialog(caller.app.id, user, recipient, now)
                .await?
        }
        _ => return Err(ApiError::invalid("chat_dialog_id", "can't be blank")),
    };
    let body = params.get("message").map(str::to_string);
    if body.as_ref().is_some_and(|b| b.len() > MAX_TEXT) {
        return Err(ApiError::invalid(
            "message",
            format!("is longer than {MAX_TEXT} bytes"),
        ));
    }
    let date_sent = match params.get("date_sent") {
        Some(raw) => parse_time(raw)
            .filter(|t| *t >= 0)
            .ok_or_else(|| ApiError::invalid("date_sent", "must be Unix seconds"))?,
        None => now,
    };
    let message = Message {
        id: ObjectId::generate(now),
        app: caller.app.id,
        recipient: dialog.peer_of(user),
        dialog: dialog.id.clone(),
        sender: user,
        body,
        date_sent,
        attachments: attachments(&params)?,
        custom: custom_fields(&params),
        markable: flag(&params, "markable")?.unwrap_or(false),
        stanza: None,
        created_at: now,
        updated_at: now,
    };
    let message = chat.save(message, |_| None).await?;
    if flag(&params, "send_to_chat")?.unwrap_or(false) {
        if let Some(realtime) = chat.realtime() {
            realtime.send_to_chat(&dialog, &message);
        }
    }
    let view = MessageView {
        delivered_ids: vec![user],
        read_ids: vec![user],
        message,
    };
    Ok((StatusCode::CREATED, Json(message_json(&view, dialog.kind))).into_response())
}

/// `PUT /chat/Message/{id1},{id2}….json` (or without ids: every message of the dialog) with
/// `chat_dialog_id` and `read=1`, `delivered=1` or `message=…`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    path: Option<Path<String>>,
    params: Params,
) -> Result<Response, ApiError> {
    let user = chat_user(&caller)?;
    let chat = &state.chat;
    let dialog_id = params
        .get("chat_dialog_id")
        .ok_or_else(|| ApiError::invalid("chat_dialog_id", "can't be blank"))?;
    let dialog = chat
        .readable_dialog(caller.app.id, user, &parse_id(dialog_id, "chat_dialog_id")?)
        .await?;
    let ids = match &path {
        Some(Path(file)) => Some(ids_from_file(file, "_id")?),
        None => None,
    };
    let messages = match &ids {
        Some(ids) => Some(in_dialog(
            chat.messages_by_id(caller.app.id, ids).await?,
            &dialog,
        )?),
        None => None,
    };
    let read = flag(&params, "read")?;
    let delivered = flag(&params, "delivered")?;
    let text = params.get("message");
    if read.is_none() && delivered.is_none() && text.is_none() {
        return Err(ApiError::invalid(
            "base",
            "nothing to update: read, delivered or message",
        ));
    }
    if let Some(text) = text {
        let Some(messages) = &messages else {
            return Err(ApiError::invalid("_id", "editing needs the message ids"));
        };
        if text.len() > MAX_TEXT {
            return Err(ApiError::invalid(
                "message",
                format!("is longer than {MAX_TEXT} bytes"),
            ));
        }
        if let Some(other) = messages.iter().find(|m| m.sender != user) {
            return Err(ApiError::Forbidden(format!(
                "Only the sender can change message {}",
                other.id
            )));
        }
        let now = clock::unix_now();
        for message in messages {
            chat.edit_message(message, user, text, now).await?;
        }
    }
    let targets = messages
        .as_ref()
        .map(|list| list.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
    if read == Some(true) {
        chat.mark(&dialog, user, Mark::Read, targets.clone())
            .await?;
    } else if delivered == Some(true) {
        chat.mark(&dialog, user, Mark::Delivered, targets).await?;
    }
    Ok(empty_ok())
}

/// `DELETE /chat/Message/{id1},{id2}….json`, body `force=1` to delete for everyone.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let user = chat_user(&caller)?;
    let chat = &state.chat;
    let ids = ids_from_file(&file, "_id")?;
    let force = flag(&params, "force")?.unwrap_or(false);
    let messages = chat.messages_by_id(caller.app.id, &ids).await?;
    let mut pairs: Vec<(Message, Dialog)> = Vec::with_capacity(messages.len());
    for message in messages {
        let dialog = match pairs.iter().find(|(_, d)| d.id == message.dialog) {
            Some((_, dialog)) => dialog.clone(),
            None => chat.existing_dialog(caller.app.id, &message.dialog).await?,
        };
        pairs.push((message, dialog));
    }
    chat.delete_messages(user, &pairs, force).await?;
    Ok(empty_ok())
}

/// `GET /chat/Message/unread.json?chat_dialog_ids=a,b`: `{"total": n, "<id>": n, …}`.
pub async fn unread(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let user = chat_user(&caller)?;
    let named = match params
        .get("chat_dialog_ids")
        .filter(|raw| !raw.trim().is_empty())
    {
        Some(raw) => {
            let mut ids = Vec::new();
            for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                ids.push(parse_id(item, "chat_dialog_ids")?);
            }
            Some(ids)
        }
        None => None,
    };
    let counts = state
        .chat
        .store
        .unread_counts(caller.app.id, user, named.as_deref())
        .await?;
    let mut object = Map::new();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    object.insert("total".into(), json!(total));
    if let Some(named) = &named {
        for id in named {
            let n = counts.iter().find(|(d, _)| d == id).map_or(0, |(_, n)| *n);
            object.insert(id.as_str().to_string(), json!(n));
        }
    } else {
        for (id, n) in &counts {
            object.insert(id.as_str().to_string(), json!(n));
        }
    }
    Ok(Json(Value::Object(object)))
}

/// Every message must belong to `dialog`; one that does not is a 404 and nothing changes.
fn in_dialog(messages: Vec<Message>, dialog: &Dialog) -> Result<Vec<Message>, ApiError> {
    if let Some(stray) = messages.iter().find(|m| m.dialog != dialog.id) {
        return Err(ApiError::NotFound(format!(
            "Message {} not found in dialog {}",
            stray.id, dialog.id
        )));
    }
    Ok(messages)
}

/// Attachments from a JSON body (an array, or an object keyed "0", "1", … as the seed shows)
/// or a form (`attachments[0][type]=image&attachments[0][id]=…`).
fn attachments(params: &Params) -> Result<Vec<Map<String, Value>>, ApiError> {
    let bad = || ApiError::invalid("attachments", "must be a list of objects");
    if let Some(value) = params.json().and_then(|j| j.get("attachments")) {
        let items: Vec<&Value> = match value {
            Value::Null => Vec::new(),
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => {
                let mut keyed: Vec<(u64, &Value)> = Vec::new();
                for (key, item) in map {
                    keyed.push((key.parse().map_err(|_| bad())?, item));
                }
                keyed.sort_by_key(|(index, _)| *index);
                keyed.into_iter().map(|(_, item)| item).collect()
            }
            _ => return Err(bad()),
        };
        return items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map.clone()),
                _ => Err(bad()),
            })
            .collect();
    }
    let mut keyed: Vec<(u64, Map<String, Value>)> = Vec::new();
    for (key, value) in params.pairs() {
        let Some(rest) = key.strip_prefix("attachments[") else {
            continue;
        };
        let (index, field) = rest
            .strip_suffix(']')
            .and_then(|inner| inner.split_once("]["))
            .ok_or_else(bad)?;
        let index: u64 = index.parse().map_err(|_| bad())?;
        if field.is_empty() || field.contains(['[', ']']) || index > 100 {
            return Err(bad());
        }
        match keyed.iter_mut().find(|(i, _)| *i == index) {
            Some((_, map)) => {
                map.insert(field.to_string(), Value::String(value.to_string()));
            }
            None => {
                let mut map = Map::new();
                map.insert(field.to_string(), Value::String(value.to_string()));
                keyed.push((index, map));
            }
        }
    }
    keyed.sort_by_key(|(index, _)| *index);
    Ok(keyed.into_iter().map(|(_, map)| map).collect())
}

/// Every top-level parameter that is not a model field: a custom parameter, JSON types kept.
fn custom_fields(params: &Params) -> Map<String, Value> {
    let mut custom = Map::new();
    if let Some(Value::Object(object)) = params.json() {
        for (key, value) in object {
            if !KNOWN.contains(&key.as_str()) && !value.is_null() {
                custom.insert(key.clone(), value.clone());
            }
        }
        return custom;
    }
    for (key, value) in params.pairs() {
        if !KNOWN.contains(&key) && !key.contains('[') {
            custom.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    custom
}
