//! QuickBlox Chat: dialogs, server-side history, read/delivered marks and unread counts,
//! shared by the REST Chat API (`api::dialogs`, `api::messages`) and XMPP (`xmpp::history`,
//! `xmpp::muc`, `xmpp::mam`). One job per file:
//!
//! - [`model`]: dialogs, messages, ObjectIds.
//! - [`query`]: the REST search operators, parsed into typed conditions.
//! - [`dialogs`]: who may create, read, change and delete a dialog (seed 002's rules).
//! - [`history`]: saving messages (`save_to_history`, REST injection), marks, edits, deletes.
//! - [`writer`]: group commit of history writes.
//!
//! The XMPP service registers itself as the [`Realtime`] side, so REST changes reach live
//! rooms and sessions (`send_to_chat=1`, an occupant removed); the push issue fills
//! [`OfflineAlerts`].

pub mod dialogs;
pub mod history;
pub mod model;
pub mod query;
pub mod writer;

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::{AppId, UserId};
use crate::store::{Store, StoreError};
use model::{Dialog, DialogId, Message};
use writer::{WriteError, Writer};

/// Why a chat operation was refused, with the REST status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// 422 `{"errors": {field: [message]}}`.
    #[error("{0} {1}")]
    Invalid(String, String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 503: the writer has stopped (shutdown).
    #[error("the chat service is shutting down")]
    Unavailable,
    /// 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChatError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ChatError {
        ChatError::Invalid(field.to_string(), message.into())
    }

    pub fn forbidden() -> ChatError {
        ChatError::Forbidden(
            "You don't have appropriate permissions to perform this operation".into(),
        )
    }
}

impl From<WriteError> for ChatError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Closed => ChatError::Unavailable,
            WriteError::Store(error) => ChatError::Store(error),
        }
    }
}

pub type ChatResult<T> = Result<T, ChatError>;

/// The live side of chat (XMPP), told about what REST changes.
pub trait Realtime: Send + Sync {
    /// A message created over REST with `send_to_chat=1`: deliver it as if sent over XMPP.
    fn send_to_chat(&self, dialog: &Dialog, message: &Message);
    /// A dialog changed (name, occupants); `removed` left it (removed by `actor`, or left
    /// themselves).
    fn dialog_changed(&self, dialog: &Dialog, removed: &[UserId], actor: UserId);
    /// A dialog was deleted for everyone.
    fn dialog_deleted(&self, app: AppId, dialog: &DialogId);
}

/// A saved message for a user who is not online, for an offline alert (push).
#[derive(Debug, Clone)]
pub struct OfflineAlert {
    pub app: AppId,
    pub recipient: UserId,
    pub sender: UserId,
    pub dialog: DialogId,
    pub message: model::MessageId,
    pub text: Option<String>,
    /// The recipient's unread messages in that dialog, for the badge.
    pub unread: i64,
}

/// Where offline alerts go. Until push notifications land, they are only logged.
pub trait OfflineAlerts: Send + Sync {
    fn offline_message(&self, alert: OfflineAlert);
}

/// The default [`OfflineAlerts`]: a debug log line and a counter.
#[derive(Debug, Default)]
pub struct LogAlerts {
    pub sent: std::sync::atomic::AtomicU64,
}

impl OfflineAlerts for LogAlerts {
    fn offline_message(&self, alert: OfflineAlert) {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(app = %alert.app, user = %alert.recipient, dialog = %alert.dialog, unread = alert.unread, "offline alert");
    }
}

/// The chat service: what REST and XMPP share.
pub struct Chat {
    pub store: Store,
    writer: Writer,
    /// `xmpp.domain`, lowercased: rooms are `{app}_{dialog}@muc.{domain}`.
    domain: String,
    realtime: OnceLock<Arc<dyn Realtime>>,
    alerts: OnceLock<Arc<dyn OfflineAlerts>>,
    /// Spawned alert lookups.
    tracker: TaskTracker,
    /// Private dialog of each pair seen, so a saved 1:1 message does not look it up: a
    /// pair's dialog never changes, only goes (force delete removes it here too).
    private_ids: dashmap::DashMap<(AppId, UserId, UserId), DialogId>,
}

/// Pairs remembered in [`Chat::private_dialog_id`]; past it the map starts over.
const PRIVATE_CACHE: usize = 1_000_000;

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Chat {
    pub fn new(
        store: Store,
        domain: &str,
        writer_queue: usize,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Chat {
        Chat {
            writer: Writer::start(store.clone(), writer_queue, tracker, shutdown),
            store,
            domain: domain.to_ascii_lowercase(),
            realtime: OnceLock::new(),
            alerts: OnceLock::new(),
            tracker: tracker.clone(),
            private_ids: dashmap::DashMap::new(),
        }
    }

    /// Registers the live side (once, at start).
    pub fn set_realtime(&self, realtime: Arc<dyn Realtime>) {
        let _ = self.realtime.set(realtime);
    }

    /// Registers where offline alerts go (once, at start); the default only logs.
    pub fn set_alerts(&self, alerts: Arc<dyn OfflineAlerts>) {
        let _ = self.alerts.set(alerts);
    }

    pub(crate) fn realtime(&self) -> Option<&Arc<dyn Realtime>> {
        self.realtime.get()
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The MUC service's domain, `muc.{domain}`.
    pub fn muc_domain(&self) -> String {
        format!("muc.{}", self.domain)
    }

    /// `{appId}_{dialogId}@muc.{domain}` for group dialogs; `None` for private ones.
    pub fn room_jid(&self, dialog: &Dialog) -> Option<String> {
        dialog
            .kind
            .has_room()
            .then(|| format!("{}_{}@muc.{}", dialog.app.0, dialog.id, self.domain))
    }

    /// The id of the private dialog of two users, created on first use; remembered.
    pub async fn private_dialog_id(
        &self,
        app: AppId,
        a: UserId,
        b: UserId,
        now: i64,
    ) -> ChatResult<DialogId> {
        let key = (app, a.min(b), a.max(b));
        if let Some(id) = self.private_ids.get(&key) {
            return Ok(id.clone());
        }
        let dialog = self.private_dialog(app, a, b, now).await?;
        if self.private_ids.len() >= PRIVATE_CACHE {
            self.private_ids.clear();
        }
        self.private_ids.insert(key, dialog.id.clone());
        Ok(dialog.id)
    }

    /// The private dialog of two users if it is remembered.
    pub fn cached_private(&self, app: AppId, a: UserId, b: UserId) -> Option<DialogId> {
        self.private_ids
            .get(&(app, a.min(b), a.max(b)))
            .map(|id| id.clone())
    }

    /// Forgets a private dialog deleted for everyone.
    pub(crate) fn forget_private(&self, dialog: &Dialog) {
        if let [a, b] = dialog.occupants[..] {
            self.private_ids
                .remove_if(&(dialog.app, a.min(b), a.max(b)), |_, id| *id == dialog.id);
        }
    }

    /// Tells the alert hook about a saved message for a user who is offline, with their
    /// unread count (read after the save committed). Runs in the background.
    pub fn alert_offline(&self, recipient: UserId, message: &Message) {
        let store = self.store.clone();
        let alerts = self.alerts.get().cloned();
        let message = message.clone();
        self.tracker.spawn(async move {
            let enabled = match store.dialog_notifications(&message.dialog, recipient).await {
                Ok(enabled) => enabled,
                Err(error) => {
                    tracing::warn!(%error, "reading notification settings failed");
                    true
                }
            };
            if !enabled {
                return;
            }
            let unread = store
                .unread_in(&message.dialog, recipient)
                .await
                .unwrap_or(0);
            let alert = OfflineAlert {
                app: message.app,
                recipient,
                sender: message.sender,
                dialog: message.dialog.clone(),
                message: message.id.clone(),
                text: message.body.clone(),
                unread,
            };
            match alerts {
                Some(alerts) => alerts.offline_message(alert),
                None => LogAlerts::default().offline_message(alert),
            }
        });
    }
}
