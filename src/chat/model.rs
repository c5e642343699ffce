//! The QuickBlox Chat objects (REST reference §10.2, §10.3): dialogs, messages and their ids.
//! Parsed at the edge (REST parameters, XMPP `extraParams`); past it nothing is a bare string.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value};

use crate::model::{AppId, UserId};

/// A 24-hex, BSON-ObjectId-style id (4 bytes of Unix seconds, 5 random, a 3-byte counter), as
/// QuickBlox uses for dialogs and messages. Lowercase once parsed; never contains `_` (the SDK
/// splits room JIDs on it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

/// The id of a dialog.
pub type DialogId = ObjectId;
/// The id of a history message; equal to the XMPP stanza id the sender used when that was one.
pub type MessageId = ObjectId;

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl ObjectId {
    /// Parses a client-given id: exactly 24 hex digits (case-insensitive).
    pub fn parse(text: &str) -> Option<ObjectId> {
        (text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| ObjectId(text.to_ascii_lowercase()))
    }

    /// A new id for `now` (Unix seconds): the time prefix keeps ids roughly in creation order.
    pub fn generate(now: i64) -> ObjectId {
        use std::sync::OnceLock;
        // One random machine/process part per process, as BSON does; the counter starts random.
        static PROCESS: OnceLock<[u8; 5]> = OnceLock::new();
        let process = PROCESS.get_or_init(|| {
            COUNTER.store(rand::random::<u32>() & 0x00ff_ffff, Ordering::Relaxed);
            rand::random()
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let secs = now.clamp(0, u32::MAX as i64) as u32;
        ObjectId(format!("{secs:08x}{}{count:06x}", hex::encode(process)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of conversation a dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialogType {
    /// 1: anyone in the application may read and join.
    PublicGroup,
    /// 2: only `occupants_ids` (a members-only room).
    Group,
    /// 3: two users, one dialog per pair.
    Private,
}

impl DialogType {
    pub fn from_code(code: i64) -> Option<DialogType> {
        match code {
            1 => Some(DialogType::PublicGroup),
            2 => Some(DialogType::Group),
            3 => Some(DialogType::Private),
            _ => None,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            DialogType::PublicGroup => 1,
            DialogType::Group => 2,
            DialogType::Private => 3,
        }
    }

    /// Group dialogs have a MUC room.
    pub fn has_room(self) -> bool {
        self != DialogType::Private
    }
}

/// The newest message of a dialog, as the dialog list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    pub id: MessageId,
    pub text: Option<String>,
    pub date_sent: i64,
    pub user: UserId,
}

/// A dialog as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub id: DialogId,
    pub app: AppId,
    pub kind: DialogType,
    /// The creator; the only one who may force-delete or remove others.
    pub owner: UserId,
    pub name: Option<String>,
    pub photo: Option<String>,
    pub is_join_required: bool,
    /// Custom parameters, `class_name` included; `None` when the dialog has none.
    pub data: Option<Map<String, Value>>,
    /// In the order they were added; the owner first.
    pub occupants: Vec<UserId>,
    pub last_message: Option<LastMessage>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Dialog {
    pub fn is_occupant(&self, user: UserId) -> bool {
        self.occupants.contains(&user)
    }

    /// Who may read its history and join its room: occupants, and anyone for a public group.
    pub fn may_read(&self, user: UserId) -> bool {
        self.kind == DialogType::PublicGroup || self.is_occupant(user)
    }

    /// The `pair` key of a private dialog between `a` and `b`.
    pub fn pair_key(a: UserId, b: UserId) -> String {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        format!("{}:{}", low.0, high.0)
    }

    /// The other user of a private dialog.
    pub fn peer_of(&self, user: UserId) -> Option<UserId> {
        (self.kind == DialogType::Private)
            .then(|| self.occupants.iter().copied().find(|&o| o != user))
            .flatten()
    }
}

/// A dialog as one user sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DialogView {
    pub dialog: Dialog,
    pub unread: i64,
}

/// A history message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub app: AppId,
    pub dialog: DialogId,
    pub sender: UserId,
    pub recipient: Option<UserId>,
    pub body: Option<String>,
    /// Unix seconds.
    pub date_sent: i64,
    /// Attachment objects (`type`, `id`, `url`, …) as given.
    pub attachments: Vec<Map<String, Value>>,
    /// Custom parameters (any other `extraParams` field or JSON key).
    pub custom: Map<String, Value>,
    pub markable: bool,
    /// The message as routed, for MAM; `None` for messages created over REST.
    pub stanza: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A message with who has received and read it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageView {
    pub message: Message,
    pub delivered_ids: Vec<UserId>,
    pub read_ids: Vec<UserId>,
}

/// Which per-user state a marker or `PUT /chat/Message` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Read,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids() {
        let a = ObjectId::generate(0x5f00_0000);
        let b = ObjectId::generate(0x5f00_0000);
        assert_eq!(a.as_str().len(), 24);
        assert!(a.as_str().starts_with("5f000000"));
        assert_ne!(a, b);
        assert_eq!(ObjectId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            ObjectId::parse("6B025096A701016781000000")
                .unwrap()
                .as_str(),
            "6b025096a701016781000000"
        );
        for bad in [
            "",
            "6b02",
            "6b025096a70101678100000g",
            "6b025096_701016781000000",
        ] {
            assert_eq!(ObjectId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_pairs_are_symmetric() {
        assert_eq!(Dialog::pair_key(UserId(9), UserId(3)), "3:9");
        assert_eq!(Dialog::pair_key(UserId(3), UserId(9)), "3:9");
    }
}
