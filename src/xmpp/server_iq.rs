//! The server's own iqs, found in one table by `(namespace, element, type)`: ping (XEP-0199),
//! disco (XEP-0030), entity time (XEP-0202), uptime (XEP-0012), version (XEP-0092), carbons
//! (XEP-0280), roster (RFC 6121 §2), blocking (XEP-0191) and privacy lists (XEP-0016).
//! Anything not in the table is `service-unavailable`.

use std::sync::atomic::Ordering;

use xmpp_proto::errors::StanzaErrorCondition;
use xmpp_proto::{IqType, Stanza};

use super::blocking::NS_BLOCKING;
use super::classify::NS_CARBONS;
use super::mam::NS_MAM;
use super::privacy::NS_PRIVACY;
use super::reply::{parse, Handled};
use super::roster::NS_ROSTER;
use super::session::Session;
use crate::clock;

pub(super) const NS_PING: &str = "urn:xmpp:ping";
pub(super) const NS_LAST: &str = "jabber:iq:last";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const NS_TIME: &str = "urn:xmpp:time";
const NS_VERSION: &str = "jabber:iq:version";

/// Features announced in disco#info of the server.
const FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_TIME,
    NS_LAST,
    NS_VERSION,
    NS_ROSTER,
    NS_CARBONS,
    NS_PRIVACY,
    NS_BLOCKING,
    "urn:xmpp:sm:3",
    "urn:xmpp:csi:0",
    "msgoffline",
    "urn:xmpp:chat-markers:0",
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:message-correct:0",
    NS_MAM,
];

/// What the server does for one kind of iq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerIq {
    Ping,
    DiscoInfo,
    DiscoItems,
    Time,
    Version,
    Uptime,
    Carbons {
        enable: bool,
    },
    RosterGet,
    RosterSet,
    BlockList,
    Block,
    Privacy,
    /// XEP-0313 query of the user's own archive.
    Archive,
}

/// `(namespace, payload element, iq type or any)` → handler.
const TABLE: &[(&str, &str, Option<IqType>, ServerIq)] = &[
    (NS_PING, "ping", Some(IqType::Get), ServerIq::Ping),
    (
        NS_DISCO_INFO,
        "query",
        Some(IqType::Get),
        ServerIq::DiscoInfo,
    ),
    (
        NS_DISCO_ITEMS,
        "query",
        Some(IqType::Get),
        ServerIq::DiscoItems,
    ),
    (NS_TIME, "time", Some(IqType::Get), ServerIq::Time),
    (NS_VERSION, "query", Some(IqType::Get), ServerIq::Version),
    (NS_LAST, "query", Some(IqType::Get), ServerIq::Uptime),
    (NS_MAM, "query", None, ServerIq::Archive),
    (
        NS_CARBONS,
        "enable",
        Some(IqType::Set),
        ServerIq::Carbons { enable: true },
    ),
    (
        NS_CARBONS,
        "disable",
        Some(IqType::Set),
        ServerIq::Carbons { enable: false },
    ),
    (NS_ROSTER, "query", Some(IqType::Get), ServerIq::RosterGet),
    (NS_ROSTER, "query", Some(IqType::Set), ServerIq::RosterSet),
    (
        NS_BLOCKING,
        "blocklist",
        Some(IqType::Get),
        ServerIq::BlockList,
    ),
    (NS_BLOCKING, "block", Some(IqType::Set), ServerIq::Block),
    (NS_BLOCKING, "unblock", Some(IqType::Set), ServerIq::Block),
    (NS_PRIVACY, "query", None, ServerIq::Privacy),
];

fn lookup(namespace: &str, element: &str, iq_type: IqType) -> Option<ServerIq> {
    TABLE
        .iter()
        .find(|(ns, name, kind, _)| {
            *ns == namespace && *name == element && kind.is_none_or(|kind| kind == iq_type)
        })
        .map(|(.., handler)| *handler)
}

impl Session {
    /// A request (`get` or `set`) addressed to the server or the user's own account.
    pub(super) async fn server_iq(&mut self, stanza: &Stanza, iq_type: IqType) -> Handled {
        let iq = parse(stanza)?;
        let Some(payload) = iq.first_child().cloned() else {
            return Err(StanzaErrorCondition::BadRequest.into());
        };
        let Some(handler) = lookup(
            payload.namespace().unwrap_or_default(),
            payload.name(),
            iq_type,
        ) else {
            return Err(StanzaErrorCondition::ServiceUnavailable.into());
        };
        // Answers come from where the request went (the server or the account).
        let from = iq.attr("to").map(str::to_string);
        let from = from.as_deref();
        match handler {
            ServerIq::Ping => Ok(self.result(&iq, from, "")),
            ServerIq::DiscoInfo => {
                let mut body = format!("<query xmlns='{NS_DISCO_INFO}'>");
                if from.is_none_or(|to| to.eq_ignore_ascii_case(self.ctx.domain())) {
                    body.push_str("<identity category='server' type='im' name='Switchboard'/>");
                    for feature in FEATURES {
                        body.push_str(&format!("<feature var='{feature}'/>"));
                    }
                } else {
                    body.push_str("<identity category='account' type='registered'/>");
                    body.push_str(&format!("<feature var='{NS_MAM}'/>"));
                }
                body.push_str("</query>");
                Ok(self.result(&iq, from, &body))
            }
            ServerIq::DiscoItems => {
                // The server lists its MUC service (XEP-0045 §6.1); an account lists nothing.
                let items = if from.is_none_or(|to| to.eq_ignore_ascii_case(self.ctx.domain())) {
                    format!(
                        "<item jid='muc.{}' name='Dialog rooms'/>",
                        self.ctx.domain()
                    )
                } else {
                    String::new()
                };
                Ok(self.result(
                    &iq,
                    from,
                    &format!("<query xmlns='{NS_DISCO_ITEMS}'>{items}</query>"),
                ))
            }
            ServerIq::Time => {
                let body = format!(
                    "<time xmlns='{NS_TIME}'><tzo>+00:00</tzo><utc>{}</utc></time>",
                    clock::iso8601(clock::unix_now())
                );
                Ok(self.result(&iq, from, &body))
            }
            ServerIq::Version => {
                let body = format!(
                    "<query xmlns='{NS_VERSION}'><name>Switchboard</name><version>{}</version></query>",
                    env!("CARGO_PKG_VERSION")
                );
                Ok(self.result(&iq, from, &body))
            }
            ServerIq::Uptime => {
                let uptime = (clock::unix_now() - self.ctx.started_at).max(0);
                Ok(self.result(
                    &iq,
                    from,
                    &format!("<query xmlns='{NS_LAST}' seconds='{uptime}'/>"),
                ))
            }
            ServerIq::Carbons { enable } => {
                self.handle()
                    .shared
                    .carbons
                    .store(enable, Ordering::Relaxed);
                Ok(self.result(&iq, from, ""))
            }
            ServerIq::RosterGet => self.roster_get(&iq, &payload).await,
            ServerIq::RosterSet => self.roster_set(&iq, &payload).await,
            ServerIq::BlockList => self.blocklist(&iq).await,
            ServerIq::Block => self.block(&iq, &payload).await,
            ServerIq::Privacy => self.privacy(&iq, &payload, iq_type).await,
            ServerIq::Archive => Box::pin(self.user_archive(&iq)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_each_request_by_namespace_element_and_type() {
        assert_eq!(lookup(NS_PING, "ping", IqType::Get), Some(ServerIq::Ping));
        assert_eq!(lookup(NS_PING, "ping", IqType::Set), None);
        assert_eq!(
            lookup(NS_ROSTER, "query", IqType::Set),
            Some(ServerIq::RosterSet)
        );
        assert_eq!(
            lookup(NS_PRIVACY, "query", IqType::Set),
            Some(ServerIq::Privacy)
        );
        assert_eq!(
            lookup(NS_PRIVACY, "query", IqType::Get),
            Some(ServerIq::Privacy)
        );
        assert_eq!(
            lookup(NS_CARBONS, "disable", IqType::Set),
            Some(ServerIq::Carbons { enable: false })
        );
        assert_eq!(lookup("urn:example", "ping", IqType::Get), None);
        assert_eq!(lookup(NS_BLOCKING, "query", IqType::Get), None);
    }

    #[test]
    fn every_namespace_in_the_table_is_announced() {
        for (namespace, ..) in TABLE {
            assert!(
                FEATURES.contains(namespace),
                "{namespace} missing from disco"
            );
        }
    }
}
