//! What REST changes to chat do live (`chat::Realtime`): a message created with
//! `send_to_chat=1` is delivered as if sent over XMPP (to the room, or to the recipient's
//! resources with offline storage when none is online), and rooms hear about occupants
//! removed, dialogs changed and dialogs deleted.

use std::sync::{Arc, Weak};

use xmpp_proto::csi::Urgency;
use xmpp_proto::BareJid;

use super::history::render;
use super::muc::{Command, Muc};
use super::offline::add_delay;
use super::XmppContext;
use crate::chat::model::{Dialog, DialogId, DialogType, Message};
use crate::chat::Realtime;
use crate::clock;
use crate::model::{AppId, UserId};

/// The XMPP side of chat. Holds the service weakly: the service owns the chat service that
/// owns this.
pub struct XmppRealtime {
    ctx: Weak<XmppContext>,
}

impl XmppRealtime {
    pub fn new(ctx: &Arc<XmppContext>) -> XmppRealtime {
        XmppRealtime {
            ctx: Arc::downgrade(ctx),
        }
    }

    fn spawn<F, Fut>(&self, work: F)
    where
        F: FnOnce(Arc<XmppContext>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(ctx) = self.ctx.upgrade() {
            let tracker = ctx.tracker.clone();
            tracker.spawn(work(ctx));
        }
    }
}

fn bare(ctx: &XmppContext, app: AppId, user: UserId) -> Option<BareJid> {
    BareJid::new(Some(&format!("{}-{}", user.0, app.0)), ctx.domain()).ok()
}

impl Realtime for XmppRealtime {
    fn send_to_chat(&self, dialog: &Dialog, message: &Message) {
        let dialog = dialog.clone();
        let message = message.clone();
        self.spawn(move |ctx| async move {
            if dialog.kind != DialogType::Private {
                let key = (dialog.app, dialog.id.clone());
                Muc::send(&ctx, key, Command::Send { message }).await;
                return;
            }
            let Some(recipient) = message.recipient else {
                return;
            };
            let (Some(to), Some(from)) = (
                bare(&ctx, dialog.app, recipient),
                bare(&ctx, dialog.app, message.sender),
            ) else {
                return;
            };
            let stanza = render(&message, "chat", &from.to_string(), &to.to_string());
            let mut delivered = false;
            for session in ctx.hub.sessions_of(&to) {
                delivered |= session
                    .send(Arc::from(stanza.as_str()), Urgency::Urgent)
                    .is_ok();
            }
            if delivered {
                return;
            }
            let now = clock::unix_now();
            let delayed = add_delay(&stanza, ctx.domain(), now);
            match ctx
                .store
                .push_offline(dialog.app, recipient, &delayed, now)
                .await
            {
                Ok(_) => {
                    ctx.metrics.offline_stored.inc();
                    ctx.metrics.offline_queue.inc();
                }
                Err(error) => tracing::error!(%error, "storing a REST message offline failed"),
            }
            ctx.chat.alert_offline(recipient, &message);
        });
    }

    fn dialog_changed(&self, dialog: &Dialog, removed: &[UserId], actor: UserId) {
        let key = (dialog.app, dialog.id.clone());
        let dialog = dialog.clone();
        let users = removed.to_vec();
        // One task, so the room hears of the removal (with its actor) before the new dialog.
        self.spawn(move |ctx| async move {
            if !users.is_empty() {
                Muc::send_if_live(&ctx, key.clone(), Command::Remove { users, actor }).await;
            }
            Muc::send_if_live(&ctx, key, Command::Refresh { dialog, actor }).await;
        });
    }

    fn dialog_deleted(&self, app: AppId, dialog: &DialogId) {
        let key = (app, dialog.clone());
        self.spawn(move |ctx| async move {
            Muc::send_if_live(&ctx, key, Command::Deleted).await;
        });
    }
}
