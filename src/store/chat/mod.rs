//! Storage of QuickBlox Chat (migration 0003), one file per job:
//!
//! - [`dialogs`]: dialogs and their members (occupants, hidden, unread counters, notification
//!   settings), the dialog list with its search operators.
//! - [`history`]: reading history: REST pages with filters, MAM key-set ranges, marks.
//! - [`writes`]: the chat writer's batches (saves, marks) and edits and deletes.
//!
//! History is read by key set on `(dialog_id, date_sent, seq)` (`seq` is arrival order);
//! unread counters live per (dialog, user) and change in the same transaction as the message
//! or mark that moves them. This file holds what they share: bound parameters, comparisons
//! built from the query operators, and row decoding.

mod dialogs;
mod history;
mod writes;

use serde_json::{Map, Value as Json};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{AnyQuery, Backend, StoreError, StoreResult};
use crate::chat::model::{Dialog, DialogType, LastMessage, Message, ObjectId};
use crate::chat::query::{Op, Value};
use crate::model::{AppId, UserId};

pub use history::HistoryRange;
pub use writes::{ChatWrite, WriteOutcome};

pub(super) const DIALOG_COLUMNS: &str = "d.id, d.app_id, d.type, d.user_id, d.name, d.photo, \
     d.is_join_required, d.data, d.occupants, d.last_message, d.last_message_date_sent, \
     d.last_message_user_id, d.last_message_id, d.created_at, d.updated_at";

pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, m.app_id, m.dialog_id, m.sender_id, m.recipient_id, \
     m.body, m.date_sent, m.attachments, m.custom, m.markable, m.stanza, m.created_at, \
     m.updated_at";

/// A value to bind: the query values, or a typed NULL.
pub(super) enum Bound {
    Value(Value),
    NullInt,
    NullText,
}

/// Bind placeholders in order: `$1`, `$2`, … for both backends, or plain `?` (see
/// [`Binds::in_order`]).
#[derive(Default)]
pub(super) struct Binds {
    values: Vec<Bound>,
    anonymous: bool,
}

impl Binds {
    /// For a statement whose placeholders appear in the text in the order they are pushed,
    /// each once: on SQLite they are anonymous `?`. sqlx asks SQLite for every parameter's
    /// name when binding, which walks the statement's list of names; with numbered names a
    /// multi-row statement of the chat writer cost the square of its parameter count (a
    /// twentieth of the server's time under load), with none it costs nothing.
    pub(super) fn in_order(backend: Backend) -> Binds {
        Binds {
            values: Vec::new(),
            anonymous: backend == Backend::Sqlite,
        }
    }

    fn placeholder(&self) -> String {
        if self.anonymous {
            "?".to_string()
        } else {
            format!("${}", self.values.len())
        }
    }

    pub(super) fn push(&mut self, value: Value) -> String {
        self.values.push(Bound::Value(value));
        self.placeholder()
    }

    pub(super) fn push_opt_int(&mut self, value: Option<i64>) -> String {
        self.values
            .push(value.map_or(Bound::NullInt, |v| Bound::Value(Value::Int(v))));
        self.placeholder()
    }

    pub(super) fn push_opt_text(&mut self, value: Option<String>) -> String {
        self.values
            .push(value.map_or(Bound::NullText, |v| Bound::Value(Value::Text(v))));
        self.placeholder()
    }

    pub(super) fn apply<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for value in &self.values {
            query = match value {
                Bound::Value(Value::Int(v)) => query.bind(*v),
                Bound::Value(Value::Text(v)) => query.bind(v.clone()),
                Bound::Value(Value::Real(v)) => query.bind(*v),
                Bound::NullInt => query.bind(None::<i64>),
                Bound::NullText => query.bind(None::<String>),
            };
        }
        query
    }
}

pub(super) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// `expr op values` for a scalar expression.
pub(super) fn compare(expr: &str, op: Op, values: &[Value], binds: &mut Binds) -> String {
    let mut one = |value: &Value| binds.push(value.clone());
    match op {
        Op::Eq => format!("{expr} = {}", one(&values[0])),
        Op::Ne => format!("({expr} IS NULL OR {expr} <> {})", one(&values[0])),
        Op::Lt => format!("{expr} < {}", one(&values[0])),
        Op::Lte => format!("{expr} <= {}", one(&values[0])),
        Op::Gt => format!("{expr} > {}", one(&values[0])),
        Op::Gte => format!("{expr} >= {}", one(&values[0])),
        Op::In => {
            let list: Vec<String> = values.iter().map(&mut one).collect();
            format!("{expr} IN ({})", list.join(", "))
        }
        Op::Nin => {
            let list: Vec<String> = values.iter().map(&mut one).collect();
            format!("({expr} IS NULL OR {expr} NOT IN ({}))", list.join(", "))
        }
        Op::All => {
            let all: Vec<String> = values
                .iter()
                .map(|v| format!("{expr} = {}", one(v)))
                .collect();
            format!("({})", all.join(" AND "))
        }
        Op::Ctn => {
            let text = match &values[0] {
                Value::Text(t) => t.clone(),
                Value::Int(i) => i.to_string(),
                Value::Real(r) => r.to_string(),
            };
            let pattern = format!("%{}%", super::escape_like(&text.to_lowercase()));
            format!(
                "LOWER({expr}) LIKE {} ESCAPE '\\'",
                one(&Value::Text(pattern))
            )
        }
    }
}

/// A membership test on a list of users; `count_sql(list)` counts how many of `list` match.
pub(super) fn membership(
    op: Op,
    values: &[Value],
    binds: &mut Binds,
    count_sql: impl Fn(&str) -> String,
) -> String {
    let mut distinct: Vec<i64> = values
        .iter()
        .filter_map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    let list: Vec<String> = distinct
        .iter()
        .map(|v| binds.push(Value::Int(*v)))
        .collect();
    let count = count_sql(&list.join(", "));
    match op {
        Op::All => format!("({count}) = {}", distinct.len()),
        Op::Ne | Op::Nin => format!("({count}) = 0"),
        _ => format!("({count}) > 0"),
    }
}

pub(super) fn encode_users(users: &[UserId]) -> String {
    users
        .iter()
        .map(|u| u.0.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn decode_users(text: &str) -> Vec<UserId> {
    text.split(',')
        .filter_map(|t| t.trim().parse().ok())
        .map(UserId)
        .collect()
}

pub(super) fn encode_map(map: Option<&Map<String, Json>>) -> Option<String> {
    map.map(|m| Json::Object(m.clone()).to_string())
}

pub(super) fn encode_list(list: &[Map<String, Json>]) -> Option<String> {
    (!list.is_empty())
        .then(|| Json::Array(list.iter().cloned().map(Json::Object).collect()).to_string())
}

pub(super) fn decode_map(text: Option<String>) -> Option<Map<String, Json>> {
    match serde_json::from_str(&text?) {
        Ok(Json::Object(map)) => Some(map),
        _ => None,
    }
}

pub(super) fn object_id(text: &str) -> StoreResult<ObjectId> {
    ObjectId::parse(text).ok_or_else(|| {
        StoreError::Backend(sqlx::Error::Decode(
            format!("stored id {text:?} is not a 24-hex id").into(),
        ))
    })
}

pub(super) fn dialog_from_row(row: &AnyRow) -> StoreResult<Dialog> {
    let id: String = row.try_get(0)?;
    let kind: i64 = row.try_get(2)?;
    let last_id: Option<String> = row.try_get(12)?;
    let last_message = match (last_id, row.try_get::<Option<i64>, _>(10)?) {
        (Some(id), Some(date_sent)) => Some(LastMessage {
            id: object_id(&id)?,
            text: row.try_get(9)?,
            date_sent,
            user: UserId(row.try_get::<Option<i64>, _>(11)?.unwrap_or(0)),
        }),
        _ => None,
    };
    Ok(Dialog {
        id: object_id(&id)?,
        app: AppId(row.try_get(1)?),
        kind: DialogType::from_code(kind).unwrap_or(DialogType::Group),
        owner: UserId(row.try_get(3)?),
        name: row.try_get(4)?,
        photo: row.try_get(5)?,
        is_join_required: row.try_get::<i64, _>(6)? != 0,
        data: decode_map(row.try_get(7)?),
        occupants: decode_users(&row.try_get::<String, _>(8)?),
        last_message,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
    })
}

pub(super) fn message_from_row(row: &AnyRow) -> StoreResult<Message> {
    let id: String = row.try_get(0)?;
    let dialog: String = row.try_get(2)?;
    let attachments = match row.try_get::<Option<String>, _>(7)? {
        Some(text) => match serde_json::from_str(&text) {
            Ok(Json::Array(items)) => items
                .into_iter()
                .filter_map(|item| match item {
                    Json::Object(map) => Some(map),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    Ok(Message {
        id: object_id(&id)?,
        app: AppId(row.try_get(1)?),
        dialog: object_id(&dialog)?,
        sender: UserId(row.try_get(3)?),
        recipient: row.try_get::<Option<i64>, _>(4)?.map(UserId),
        body: row.try_get(5)?,
        date_sent: row.try_get(6)?,
        attachments,
        custom: decode_map(row.try_get(8)?).unwrap_or_default(),
        markable: row.try_get::<i64, _>(9)? != 0,
        stanza: row.try_get(10)?,
        created_at: row.try_get(11)?,
        updated_at: row.try_get(12)?,
    })
}
