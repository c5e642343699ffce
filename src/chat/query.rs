//! The search operators of the Chat REST API (seed 002 "Retrieve dialogs", "Retrieve
//! messages"): `field=value`, `field[op]=value` with `lt lte gt gte ne in nin all ctn or`,
//! `limit`, `skip`, `count`, `sort_asc`/`sort_desc`, and dialog custom parameters
//! `data[field]` / `data[field][op]`. Parsed here into typed conditions on known fields; the
//! store turns them into SQL with every value bound, never spliced.

use std::fmt;

use super::model::{DialogType, ObjectId};
use crate::clock;

/// The largest page a client may ask for (QuickBlox's default is 100).
pub const MAX_LIMIT: u32 = 100;

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    Ne,
    /// One of the values.
    In,
    /// None of the values.
    Nin,
    /// Array fields: contains every value. Scalar fields: equals every value.
    All,
    /// Substring, case-insensitive.
    Ctn,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "ne" => Op::Ne,
            "in" | "or" => Op::In,
            "nin" => Op::Nin,
            "all" => Op::All,
            "ctn" => Op::Ctn,
            _ => return None,
        })
    }

    fn is_list(self) -> bool {
        matches!(self, Op::In | Op::Nin | Op::All)
    }
}

/// A value to compare with, typed by the field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Real(f64),
}

/// What a field holds, which decides how its values parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    /// A 24-hex id.
    Id,
    /// Unix seconds; ISO-8601 accepted too.
    Time,
    /// A list of user ids (`occupants_ids`): `in`/`nin`/`all`/eq test membership.
    UserList,
    /// A custom parameter: numbers compare as numbers, anything else as text.
    Custom,
}

/// The dialog fields a client may filter and sort by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogField {
    Id,
    Type,
    Name,
    LastMessageDateSent,
    CreatedAt,
    UpdatedAt,
    Occupants,
    /// `data[name]`: a custom parameter (`class_name` included).
    Data(String),
}

impl DialogField {
    fn parse(name: &str) -> Option<DialogField> {
        Some(match name {
            "_id" => DialogField::Id,
            "type" => DialogField::Type,
            "name" => DialogField::Name,
            "last_message_date_sent" => DialogField::LastMessageDateSent,
            "created_at" => DialogField::CreatedAt,
            "updated_at" => DialogField::UpdatedAt,
            "occupants_ids" => DialogField::Occupants,
            _ => return None,
        })
    }

    fn kind(&self) -> Kind {
        match self {
            DialogField::Id => Kind::Id,
            DialogField::Type => Kind::Int,
            DialogField::Name => Kind::Text,
            DialogField::LastMessageDateSent | DialogField::CreatedAt | DialogField::UpdatedAt => {
                Kind::Time
            }
            DialogField::Occupants => Kind::UserList,
            DialogField::Data(_) => Kind::Custom,
        }
    }
}

/// The message fields a client may filter and sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageField {
    Id,
    Message,
    DateSent,
    SenderId,
    RecipientId,
    UpdatedAt,
    CreatedAt,
    AttachmentType,
}

impl MessageField {
    fn parse(name: &str) -> Option<MessageField> {
        Some(match name {
            "_id" => MessageField::Id,
            "message" => MessageField::Message,
            "date_sent" => MessageField::DateSent,
            "sender_id" => MessageField::SenderId,
            "recipient_id" => MessageField::RecipientId,
            "updated_at" => MessageField::UpdatedAt,
            "created_at" => MessageField::CreatedAt,
            "attachments.type" => MessageField::AttachmentType,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            MessageField::Id => Kind::Id,
            MessageField::Message | MessageField::AttachmentType => Kind::Text,
            MessageField::DateSent => Kind::Int,
            MessageField::SenderId | MessageField::RecipientId => Kind::Int,
            MessageField::UpdatedAt | MessageField::CreatedAt => Kind::Time,
        }
    }
}

/// One condition: `field op values` (one value except for list operators).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition<F> {
    pub field: F,
    pub op: Op,
    pub values: Vec<Value>,
}

/// Sort, page and count options shared by both lists.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<F> {
    /// Field and descending?
    pub sort: Option<(F, bool)>,
    pub limit: u32,
    pub skip: u64,
    /// Answer with the number of matches only.
    pub count: bool,
}

/// A validated `GET /chat/Dialog` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogQuery {
    pub conditions: Vec<Condition<DialogField>>,
    pub page: Page<DialogField>,
}

/// A validated `GET /chat/Message` request (the dialog is checked separately).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageQuery {
    pub conditions: Vec<Condition<MessageField>>,
    pub page: Page<MessageField>,
}

/// A parameter the client got wrong: the key and why, for a 422 `{"errors": {key: [why]}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    pub key: String,
    pub why: String,
}

impl fmt::Display for BadParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.why)
    }
}

fn bad(key: &str, why: impl Into<String>) -> BadParam {
    BadParam {
        key: key.to_string(),
        why: why.into(),
    }
}

/// Keys that are not filters in either list.
const RESERVED: &[&str] = &[
    "limit",
    "skip",
    "count",
    "sort_asc",
    "sort_desc",
    "chat_dialog_id",
    "mark_as_read",
    "token",
];

impl DialogQuery {
    /// Parses the request's decoded `(key, value)` pairs. Unknown plain keys are ignored (the
    /// SDK adds its own); an unknown operator or a value of the wrong type is an error.
    pub fn parse<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<DialogQuery, BadParam> {
        let mut conditions = Vec::new();
        let mut options = Vec::new();
        for (key, value) in pairs {
            if RESERVED.contains(&key) {
                options.push((key, value));
                continue;
            }
            let (name, op) = split_operator(key)?;
            let field = match name.strip_prefix("data[") {
                Some(rest) => {
                    let inner = rest.trim_end_matches(']');
                    if inner.is_empty() || inner.contains(['[', ']']) {
                        return Err(bad(key, "is not a valid custom parameter"));
                    }
                    DialogField::Data(inner.to_string())
                }
                None => match DialogField::parse(name) {
                    Some(field) => field,
                    None => continue,
                },
            };
            let kind = field.kind();
            conditions.push(Condition {
                values: parse_values(key, kind, op, value)?,
                field,
                op,
            });
        }
        let page = parse_page(&options, |name| match DialogField::parse(name) {
            Some(DialogField::Occupants) | None => None,
            Some(field) => Some(field),
        })?;
        Ok(DialogQuery { conditions, page })
    }

    /// Whether a condition restricts `type` so that no group dialog can match (used to skip
    /// public dialogs cheaply); conservative.
    pub fn only_type(&self) -> Option<DialogType> {
        self.conditions
            .iter()
            .find_map(|c| match (&c.field, c.op, c.values.as_slice()) {
                (DialogField::Type, Op::Eq, [Value::Int(code)]) => DialogType::from_code(*code),
                _ => None,
            })
    }
}

impl MessageQuery {
    pub fn parse<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<MessageQuery, BadParam> {
        let mut conditions = Vec::new();
        let mut options = Vec::new();
        for (key, value) in pairs {
            if RESERVED.contains(&key) {
                options.push((key, value));
                continue;
            }
            let (name, op) = split_operator(key)?;
            let Some(field) = MessageField::parse(name) else {
                continue;
            };
            conditions.push(Condition {
                values: parse_values(key, field.kind(), op, value)?,
                field,
                op,
            });
        }
        let page = parse_page(&options, |name| match MessageField::parse(name) {
            Some(MessageField::AttachmentType) | None => None,
            Some(field) => Some(field),
        })?;
        Ok(MessageQuery { conditions, page })
    }
}

/// `name[op]` → (`name`, op); `data[f][op]` → (`data[f]`, op); a plain key is `Eq`.
fn split_operator(key: &str) -> Result<(&str, Op), BadParam> {
    let Some(open) = key.rfind('[') else {
        return Ok((key, Op::Eq));
    };
    let Some(inner) = key[open + 1..].strip_suffix(']') else {
        return Err(bad(key, "is not a valid parameter name"));
    };
    if key.starts_with("data[") && open == 4 {
        // `data[field]` itself: an equality on a custom parameter.
        return Ok((key, Op::Eq));
    }
    match Op::parse(inner) {
        Some(op) => Ok((&key[..open], op)),
        None => Err(bad(key, format!("has an unknown operator {inner:?}"))),
    }
}

fn parse_values(key: &str, kind: Kind, op: Op, raw: &str) -> Result<Vec<Value>, BadParam> {
    let items: Vec<&str> = if op.is_list() {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        vec![raw]
    };
    if items.is_empty() {
        return Err(bad(key, "needs at least one value"));
    }
    if op == Op::Ctn && !matches!(kind, Kind::Text | Kind::Custom | Kind::Id) {
        return Err(bad(key, "ctn applies to text fields only"));
    }
    if matches!(op, Op::Lt | Op::Lte | Op::Gt | Op::Gte) && kind == Kind::UserList {
        return Err(bad(key, "cannot be compared with lt/lte/gt/gte"));
    }
    items
        .into_iter()
        .map(|item| parse_value(key, kind, op, item))
        .collect()
}

fn parse_value(key: &str, kind: Kind, op: Op, raw: &str) -> Result<Value, BadParam> {
    match kind {
        Kind::Int | Kind::UserList => raw
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| bad(key, format!("must be an integer, not {raw:?}"))),
        Kind::Time => parse_time(raw).map(Value::Int).ok_or_else(|| {
            bad(
                key,
                format!("must be Unix seconds or an ISO-8601 date, not {raw:?}"),
            )
        }),
        Kind::Id if op == Op::Ctn => Ok(Value::Text(raw.to_ascii_lowercase())),
        Kind::Id => ObjectId::parse(raw.trim())
            .map(|id| Value::Text(id.as_str().to_string()))
            .ok_or_else(|| bad(key, format!("must be a 24-hex id, not {raw:?}"))),
        Kind::Text => Ok(Value::Text(raw.to_string())),
        Kind::Custom => Ok(match raw.trim().parse::<f64>() {
            Ok(number) if number.is_finite() && op != Op::Ctn => Value::Real(number),
            _ => Value::Text(raw.to_string()),
        }),
    }
}

/// Unix seconds (fractions truncated, as the SDK does) or an ISO-8601 UTC date.
pub fn parse_time(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<i64>() {
        return Some(seconds);
    }
    if let Ok(seconds) = raw.parse::<f64>() {
        return seconds.is_finite().then_some(seconds.trunc() as i64);
    }
    clock::parse_iso8601(raw)
}

fn parse_page<F>(
    options: &[(&str, &str)],
    sortable: impl Fn(&str) -> Option<F>,
) -> Result<Page<F>, BadParam> {
    let mut page = Page {
        sort: None,
        limit: MAX_LIMIT,
        skip: 0,
        count: false,
    };
    for &(key, value) in options {
        match key {
            "limit" => {
                let limit: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(key, "must be a non-negative integer"))?;
                if limit == 0 || limit > u64::from(MAX_LIMIT) {
                    return Err(bad(key, format!("must be between 1 and {MAX_LIMIT}")));
                }
                page.limit = limit as u32;
            }
            "skip" => {
                page.skip = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|skip| *skip <= i64::MAX as u64)
                    .ok_or_else(|| bad(key, "must be a non-negative integer"))?;
            }
            "count" => page.count = matches!(value.trim(), "1" | "true"),
            "sort_asc" | "sort_desc" => {
                let field = sortable(value.trim())
                    .ok_or_else(|| bad(key, format!("cannot sort by {value:?}")))?;
                page.sort = Some((field, key == "sort_desc"));
            }
            _ => {}
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialogs(pairs: &[(&str, &str)]) -> Result<DialogQuery, BadParam> {
        DialogQuery::parse(pairs.iter().copied())
    }

    #[test]
    fn dialog_operators() {
        let q = dialogs(&[
            ("type[in]", "1, 2"),
            ("name[ctn]", "Bob"),
            ("last_message_date_sent[gte]", "1403174078"),
            ("created_at[lt]", "2030-01-01T00:00:00Z"),
            ("occupants_ids[all]", "5,6"),
            ("_id[nin]", "53A1BE95E4B08A80C999DCCD"),
            ("data[class_name]", "CoolDialog"),
            ("data[rating][gt]", "3.5"),
            ("limit", "50"),
            ("skip", "10"),
            ("sort_desc", "last_message_date_sent"),
            ("unknown_sdk_key", "x"),
        ])
        .unwrap();
        assert_eq!(q.conditions.len(), 8);
        assert_eq!(q.conditions[0].values, vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(q.conditions[3].values, vec![Value::Int(1_893_456_000)]);
        assert_eq!(
            q.conditions[5].values,
            vec![Value::Text("53a1be95e4b08a80c999dccd".into())]
        );
        assert_eq!(
            q.conditions[6].field,
            DialogField::Data("class_name".into())
        );
        assert_eq!(q.conditions[6].op, Op::Eq);
        assert_eq!(q.conditions[7].field, DialogField::Data("rating".into()));
        assert_eq!(q.conditions[7].values, vec![Value::Real(3.5)]);
        assert_eq!(q.page.limit, 50);
        assert_eq!(q.page.skip, 10);
        assert_eq!(q.page.sort, Some((DialogField::LastMessageDateSent, true)));
    }

    #[test]
    fn bad_dialog_queries_say_which_key() {
        for (pairs, key) in [
            (vec![("type", "x")], "type"),
            (vec![("type[like]", "2")], "type[like]"),
            (vec![("_id", "nothex")], "_id"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "101")], "limit"),
            (vec![("skip", "-1")], "skip"),
            (vec![("sort_asc", "password")], "sort_asc"),
            (vec![("occupants_ids[gt]", "3")], "occupants_ids[gt]"),
            (vec![("type[in]", ",")], "type[in]"),
            (vec![("created_at", "yesterday")], "created_at"),
        ] {
            let error = dialogs(&pairs).unwrap_err();
            assert_eq!(error.key, key, "{pairs:?}: {error}");
        }
    }

    #[test]
    fn message_operators() {
        let q = MessageQuery::parse(
            [
                ("chat_dialog_id", "53a1be95e4b08a80c999dccd"),
                ("sender_id[or]", "134,2566"),
                ("date_sent[lt]", "1403174078"),
                ("attachments.type", "image"),
                ("sort_desc", "date_sent"),
                ("mark_as_read", "0"),
            ]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(q.conditions.len(), 3);
        assert_eq!(q.conditions[0].op, Op::In);
        assert_eq!(q.page.sort, Some((MessageField::DateSent, true)));
        assert!(MessageQuery::parse([("sender_id", "x")].into_iter()).is_err());
    }
}
