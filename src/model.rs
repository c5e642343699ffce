//! Domain types shared by the store, the REST API and (later) XMPP: typed ids, applications,
//! users and sessions. Parsing into these happens at the edge; past it nothing is a bare `i64`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Application (tenant) id. Every row of tenant data carries one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct AppId(pub i64);

/// User id, unique across applications (it is the store's row id), and the node prefix of the
/// user's JID `{userId}-{appId}@{domain}`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An application as stored. The API key itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub auth_key: String,
    pub auth_secret: String,
    pub account_key: String,
    pub created_at: i64,
}

/// A user as stored. Tags are kept without surrounding whitespace, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub id: UserId,
    pub app_id: AppId,
    pub login: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub full_name: Option<String>,
    pub website: Option<String>,
    pub external_user_id: Option<String>,
    pub facebook_id: Option<String>,
    pub twitter_id: Option<String>,
    pub twitter_digits_id: Option<String>,
    pub blob_id: Option<i64>,
    pub custom_data: Option<String>,
    pub tags: Vec<String>,
    pub password_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_request_at: Option<i64>,
}

/// A REST session. The token is only ever held by the client; the store keys sessions by the
/// token's SHA-256 so a leaked database does not leak live credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub token_hash: String,
    pub app_id: AppId,
    /// `None` for an application session (read-only until `POST /login.json`).
    pub user_id: Option<UserId>,
    pub nonce: i64,
    pub ts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Unix seconds; slides forward on every request.
    pub expires_at: i64,
}

/// The user fields a client may filter, order and look users up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserField {
    Id,
    Login,
    Email,
    Phone,
    FullName,
    Website,
    ExternalUserId,
    FacebookId,
    TwitterId,
    TwitterDigitsId,
    CreatedAt,
    UpdatedAt,
    LastRequestAt,
}

/// How values of a field compare: the SDK's declared filter type is unreliable (it is always
/// `typeof value`), so the type comes from the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Integer,
    Text,
    Date,
}

impl UserField {
    /// Parses the wire name used in `filter[]`, `order` and lookups.
    pub fn parse(name: &str) -> Option<UserField> {
        Some(match name {
            "id" => UserField::Id,
            "login" => UserField::Login,
            "email" => UserField::Email,
            "phone" => UserField::Phone,
            "full_name" => UserField::FullName,
            "website" => UserField::Website,
            "external_user_id" => UserField::ExternalUserId,
            "facebook_id" => UserField::FacebookId,
            "twitter_id" => UserField::TwitterId,
            "twitter_digits_id" => UserField::TwitterDigitsId,
            "created_at" => UserField::CreatedAt,
            "updated_at" => UserField::UpdatedAt,
            "last_request_at" => UserField::LastRequestAt,
            _ => return None,
        })
    }

    /// The column in the `users` table. A fixed string, so it is safe to put into SQL text.
    pub fn column(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Login => "login",
            UserField::Email => "email",
            UserField::Phone => "phone",
            UserField::FullName => "full_name",
            UserField::Website => "website",
            UserField::ExternalUserId => "external_user_id",
            UserField::FacebookId => "facebook_id",
            UserField::TwitterId => "twitter_id",
            UserField::TwitterDigitsId => "twitter_digits_id",
            UserField::CreatedAt => "created_at",
            UserField::UpdatedAt => "updated_at",
            UserField::LastRequestAt => "last_request_at",
        }
    }

    pub fn kind(self) -> FieldKind {
        match self {
            UserField::Id => FieldKind::Integer,
            UserField::CreatedAt | UserField::UpdatedAt | UserField::LastRequestAt => {
                FieldKind::Date
            }
            _ => FieldKind::Text,
        }
    }
}

/// A comparison in a user list filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
    Between,
    In,
}

impl FilterOp {
    pub fn parse(name: &str) -> Option<FilterOp> {
        Some(match name {
            "gt" => FilterOp::Gt,
            "lt" => FilterOp::Lt,
            "ge" => FilterOp::Ge,
            "le" => FilterOp::Le,
            "eq" => FilterOp::Eq,
            "ne" => FilterOp::Ne,
            "between" => FilterOp::Between,
            "in" => FilterOp::In,
            _ => return None,
        })
    }
}

/// A value bound into a query; integers for id and date fields, text otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterValue {
    Int(i64),
    Text(String),
}

/// One parsed `filter[]` entry. `values` has one element except for `between` (two) and `in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFilter {
    pub field: UserField,
    pub op: FilterOp,
    pub values: Vec<FilterValue>,
}

/// A validated user list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    pub filters: Vec<UserFilter>,
    /// Users having at least one of these tags.
    pub any_tags: Vec<String>,
    pub order: Option<(UserField, bool)>,
    pub limit: u32,
    pub offset: u64,
}

/// A roster subscription state (RFC 6121 §2.1.2.5), decided by the core's state machine.
pub use xmpp_proto::subscription::Subscription;

/// One roster entry of a user: a contact in the same application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub contact: UserId,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Our subscription request to the contact awaits their answer.
    pub ask_out: bool,
    /// The contact asked to see our presence and we have not answered.
    pub pending_in: bool,
    pub groups: Vec<String>,
    pub version: i64,
}
