//! XEP-0280 message carbons: copies of a user's chat messages to their other resources that
//! enabled carbons, as `<sent/>` (what this resource sent) and `<received/>` (what another
//! resource of the recipient got).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use xmpp_proto::c2s::with_client_namespace;
use xmpp_proto::csi::Urgency;
use xmpp_proto::{escape_attr, BareJid};

use super::classify::NS_CARBONS;
use super::hub::SessionHandle;
use super::session::Session;

const NS_FORWARD: &str = "urn:xmpp:forward:0";

impl Session {
    /// `sent` carbons to the sender's other resources that enabled carbons.
    pub(super) fn sent_carbons(&self, stamped: &str, id: Option<&str>) {
        // Built once, for the first copy: most senders have no other carbon-enabled device.
        let mut parts: Option<(String, String, String)> = None;
        for session in self.ctx.hub.sessions_of(self.my_bare()) {
            if session.shared.jid == *self.me() || !session.shared.carbons.load(Ordering::Relaxed) {
                continue;
            }
            let (id, from, inner) = parts.get_or_insert_with(|| {
                (
                    // The outer id equals the inner one: the QuickBlox SDK reads the outer id.
                    id.map(|id| format!(" id='{}'", escape_attr(id)))
                        .unwrap_or_default(),
                    escape_attr(&self.my_bare().to_string()).into_owned(),
                    with_client_namespace(stamped),
                )
            });
            let carbon = format!(
                "<message from='{from}' to='{}' type='chat'{id}><sent xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'>{inner}</forwarded></sent></message>",
                escape_attr(&session.shared.jid.to_string()),
            );
            self.hand_over(&session, Arc::from(carbon), Urgency::Defer);
        }
    }

    /// `received` carbons to the recipient's carbon-enabled resources (among `sessions`, all
    /// of `bare`'s) that did not get the message itself. The wrapper has no id of its own: a
    /// client must not take it for the message.
    pub(super) fn received_carbons(
        &self,
        bare: &BareJid,
        sessions: &[SessionHandle],
        delivered: &[&SessionHandle],
        stamped: &str,
    ) {
        for session in sessions {
            if delivered
                .iter()
                .any(|d| d.shared.generation == session.shared.generation)
                || !session.shared.carbons.load(Ordering::Relaxed)
            {
                continue;
            }
            let carbon = format!(
                "<message from='{}' to='{}' type='chat'><received xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'>{}</forwarded></received></message>",
                escape_attr(&bare.to_string()),
                escape_attr(&session.shared.jid.to_string()),
                with_client_namespace(stamped)
            );
            self.hand_over(session, Arc::from(carbon), Urgency::Defer);
        }
    }
}
