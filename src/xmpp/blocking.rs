//! XEP-0191 blocking command: the block list, block and unblock with pushes to every resource,
//! and the presence a (un)blocked contact sees change. Enforcement is in
//! [`block_rules`](super::block_rules).

use std::sync::Arc;

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{escape_attr, Element, Jid};

use super::reply::{retarget, Handled};
use super::session::Session;

pub(super) const NS_BLOCKING: &str = "urn:xmpp:blocking";

impl Session {
    pub(super) async fn blocklist(&mut self, iq: &Element) -> Handled {
        let list = self.ctx.store.block_list(self.user).await?;
        let items: String = list
            .iter()
            .map(|jid| format!("<item jid='{}'/>", escape_attr(jid)))
            .collect();
        Ok(self.result(
            iq,
            None,
            &format!("<blocklist xmlns='{NS_BLOCKING}'>{items}</blocklist>"),
        ))
    }

    pub(super) async fn block(&mut self, iq: &Element, payload: &Element) -> Handled {
        // Every item must name a valid JID: dropping a bad one would turn `<unblock>` with only
        // bad items into "unblock everyone" (XEP-0191 §3.4 wants jid-malformed).
        let jids: Option<Vec<Jid>> = payload
            .children()
            .filter(|i| i.name() == "item")
            .map(|i| i.attr("jid").and_then(|j| Jid::parse(j).ok()))
            .collect();
        let Some(jids) = jids else {
            return Err(StanzaErrorCondition::JidMalformed.into());
        };
        let blocking = payload.name() == "block";
        if blocking && jids.is_empty() {
            return Err(StanzaErrorCondition::BadRequest.into());
        }
        let texts: Vec<String> = jids.iter().map(Jid::to_string).collect();
        if blocking {
            self.ctx.store.block(self.user, &texts).await?;
        } else {
            self.ctx.store.unblock(self.user, &texts).await?;
        }
        self.blocks_changed();
        self.presence_after_block(&jids, blocking).await;
        // XEP-0191 §3.3: push the change to every resource.
        let items: String = texts
            .iter()
            .map(|j| format!("<item jid='{}'/>", escape_attr(j)))
            .collect();
        for session in self.ctx.hub.sessions_of(self.my_bare()) {
            self.push_counter += 1;
            let push = format!(
                "<iq type='set' id='push{}' to='{}'><{} xmlns='{NS_BLOCKING}'>{items}</{}></iq>",
                self.push_counter,
                escape_attr(&session.shared.jid.to_string()),
                payload.name(),
                payload.name()
            );
            self.hand_over(&session, Arc::from(push), Urgency::Urgent);
        }
        Ok(self.result(iq, None, ""))
    }

    /// XEP-0191 §3.3 and §3.4: a newly blocked contact that could see this user's presence gets
    /// `unavailable` from each of their available resources; an unblocked one gets their
    /// current presence again. An empty unblock (everything) has no single contact to tell.
    async fn presence_after_block(&mut self, jids: &[Jid], blocking: bool) {
        let mine: Vec<(String, String)> = self
            .ctx
            .hub
            .sessions_of(self.my_bare())
            .into_iter()
            .filter_map(|s| {
                s.shared
                    .presence()
                    .map(|p| (s.shared.jid.to_string(), p.stanza))
            })
            .collect();
        if mine.is_empty() {
            return;
        }
        for jid in jids {
            let Jid::Bare(bare) = jid else { continue };
            let Some(contact) = self.local_user(bare) else {
                continue;
            };
            let subscribed = match self.ctx.store.roster_item(self.user, contact).await {
                Ok(item) => item.is_some_and(|item| item.subscription.has_from()),
                // Resources that got directed presence are still told.
                Err(error) => {
                    tracing::error!(%error, "roster lookup after a block change failed");
                    false
                }
            };
            for session in self.ctx.hub.sessions_of(bare) {
                let theirs = &session.shared.jid;
                let saw_us = subscribed || self.directed.contains(theirs);
                if !saw_us {
                    continue;
                }
                if blocking {
                    self.directed.remove(theirs);
                }
                if !blocking && !subscribed {
                    continue;
                }
                let to = theirs.to_string();
                for (my_jid, presence) in &mine {
                    let stanza = if blocking {
                        format!(
                            "<presence type='unavailable' from='{}' to='{}'/>",
                            escape_attr(my_jid),
                            escape_attr(&to)
                        )
                    } else {
                        retarget(presence, &to)
                    };
                    self.hand_over(
                        &session,
                        Arc::from(stanza),
                        Urgency::Coalesce(my_jid.clone()),
                    );
                }
            }
        }
    }
}
