//! Rosters (RFC 6121 §2): get with versioning (XEP-0237), set and remove, and the pushes that
//! tell every resource of the owner about a change.

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::subscription::{Subscription, SubscriptionKind};
use xmpp_proto::{escape_attr, escape_text, BareJid, Element};

use super::reply::{Failure, Handled};
use super::session::Session;
use crate::model::{RosterItem, UserId};

pub(super) const NS_ROSTER: &str = "jabber:iq:roster";

impl Session {
    pub(super) async fn roster_get(&mut self, iq: &Element, query: &Element) -> Handled {
        let (version, items) = self.ctx.store.roster(self.user).await?;
        // XEP-0237: an up-to-date client gets an empty result and relies on pushes.
        if query.attr("ver") == Some(version.to_string().as_str()) {
            return Ok(self.result(iq, None, ""));
        }
        let mut body = format!("<query xmlns='{NS_ROSTER}' ver='{version}'>");
        for item in items.iter().filter(|i| is_visible(i)) {
            if let Some(xml) = self.roster_item_xml(item) {
                body.push_str(&xml);
            }
        }
        body.push_str("</query>");
        Ok(self.result(iq, None, &body))
    }

    pub(super) async fn roster_set(&mut self, iq: &Element, query: &Element) -> Handled {
        let items: Vec<&Element> = query.children().collect();
        let [item] = items.as_slice() else {
            return Err(StanzaErrorCondition::BadRequest.into());
        };
        let contact = item
            .attr("jid")
            .and_then(|j| BareJid::parse(j).ok())
            .and_then(|bare| self.local_user(&bare));
        let Some(contact) = contact else {
            return Err(StanzaErrorCondition::ItemNotFound.into());
        };
        if contact == self.user {
            return Err(StanzaErrorCondition::NotAllowed.into());
        }
        let store = self.ctx.store.clone();
        if item.attr("subscription") == Some("remove") {
            return Box::pin(self.roster_remove(iq, contact)).await;
        }
        if store.user(self.app, contact).await?.is_none() {
            return Err(StanzaErrorCondition::ItemNotFound.into());
        }
        let name = item.attr("name").filter(|n| !n.is_empty());
        let groups: Vec<String> = item
            .children()
            .filter(|c| c.name() == "group")
            .map(|c| c.text())
            .filter(|g| !g.is_empty() && !g.contains('\n'))
            .collect();
        let stored = store
            .set_roster_details(self.app, self.user, contact, name, &groups)
            .await?;
        let owner = self.my_bare().clone();
        self.push_roster(&owner, &stored, None);
        Ok(self.result(iq, None, ""))
    }

    /// RFC 6121 §2.5: removing a contact cancels the subscriptions both ways first; they
    /// rewrite the item, so removing it afterwards leaves the "remove" push as the last word.
    async fn roster_remove(&mut self, iq: &Element, contact: UserId) -> Handled {
        let store = self.ctx.store.clone();
        let existing = store
            .roster_item(self.user, contact)
            .await?
            .ok_or(Failure::from(StanzaErrorCondition::ItemNotFound))?;
        let contact_bare = self
            .user_bare(contact)
            .map_err(|_| Failure::from(StanzaErrorCondition::ItemNotFound))?;
        if existing.subscription.has_to() || existing.ask_out {
            self.subscription(SubscriptionKind::Unsubscribe, &contact_bare, contact)
                .await?;
        }
        if existing.subscription.has_from() || existing.pending_in {
            self.subscription(SubscriptionKind::Unsubscribed, &contact_bare, contact)
                .await?;
        }
        let Some(version) = store.remove_roster_item(self.user, contact).await? else {
            return Err(StanzaErrorCondition::ItemNotFound.into());
        };
        let removed = RosterItem {
            version,
            ..empty_item(contact)
        };
        let owner = self.my_bare().clone();
        self.push_roster(&owner, &removed, Some(contact));
        Ok(self.result(iq, None, ""))
    }

    /// Sends a roster push for `item` to every session of `owner` (RFC 6121 §2.1.6).
    pub(super) fn push_roster(
        &mut self,
        owner: &BareJid,
        item: &RosterItem,
        removed: Option<UserId>,
    ) {
        let item_xml = match removed {
            Some(contact) => match self.user_bare(contact) {
                Ok(bare) => format!(
                    "<item jid='{}' subscription='remove'/>",
                    escape_attr(&bare.to_string())
                ),
                Err(_) => return,
            },
            // A pending request alone is not a roster item (RFC 6121 §3.1.3): nothing to push.
            None if !is_visible(item) => return,
            None => match self.roster_item_xml(item) {
                Some(xml) => xml,
                None => return,
            },
        };
        for session in self.ctx.hub.sessions_of(owner) {
            self.push_counter += 1;
            let push = format!(
                "<iq type='set' id='push{}' to='{}'><query xmlns='{NS_ROSTER}' ver='{}'>{item_xml}</query></iq>",
                self.push_counter,
                escape_attr(&session.shared.jid.to_string()),
                item.version
            );
            self.hand_over(&session, Arc::from(push), Urgency::Urgent);
        }
    }

    fn roster_item_xml(&self, item: &RosterItem) -> Option<String> {
        let bare = self.user_bare(item.contact).ok()?;
        let mut xml = format!(
            "<item jid='{}' subscription='{}'",
            escape_attr(&bare.to_string()),
            item.subscription.as_str()
        );
        if item.ask_out {
            xml.push_str(" ask='subscribe'");
        }
        if let Some(name) = &item.name {
            xml.push_str(&format!(" name='{}'", escape_attr(name)));
        }
        if item.groups.is_empty() {
            xml.push_str("/>");
        } else {
            xml.push('>');
            for group in &item.groups {
                xml.push_str(&format!("<group>{}</group>", escape_text(group)));
            }
            xml.push_str("</item>");
        }
        Some(xml)
    }
}

/// A roster item for `contact` with no subscription and nothing pending.
pub(super) fn empty_item(contact: UserId) -> RosterItem {
    RosterItem {
        contact,
        name: None,
        subscription: Subscription::None,
        ask_out: false,
        pending_in: false,
        groups: Vec::new(),
        version: 0,
    }
}

/// Pending-in-only entries are not roster items (RFC 6121 §3.1.3).
fn is_visible(item: &RosterItem) -> bool {
    !(item.pending_in
        && item.subscription == Subscription::None
        && !item.ask_out
        && item.name.is_none()
        && item.groups.is_empty())
}
