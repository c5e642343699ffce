//! What one user refuses, per stanza kind: their XEP-0191 block list plus the `jid` items of
//! their default XEP-0016 privacy list (QuickBlox blocks users with privacy lists).
//!
//! Built from the store once per user and cached in the XMPP context; every change to either
//! list drops the cached copy.

use std::collections::HashSet;

use xmpp_proto::Element;

/// The kinds of traffic a privacy list item can name (XEP-0016 §2.2); an item without children
/// applies to all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Messages to the user.
    MessageIn,
    /// Presence notifications to the user.
    PresenceIn,
    /// The user's presence notifications to others.
    PresenceOut,
    /// iq requests to the user.
    IqIn,
    /// Anything privacy lists do not name, such as subscription requests: only the block list
    /// refuses it.
    Unlisted,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::MessageIn,
        Kind::PresenceIn,
        Kind::PresenceOut,
        Kind::IqIn,
    ];

    fn element(self) -> &'static str {
        match self {
            Kind::MessageIn => "message",
            Kind::PresenceIn => "presence-in",
            Kind::PresenceOut => "presence-out",
            Kind::IqIn => "iq",
            Kind::Unlisted => "",
        }
    }
}

/// One user's denials, as lowercase bare JIDs.
#[derive(Debug, Default)]
pub struct BlockRules {
    /// XEP-0191: nothing in or out, whatever the kind.
    blocked: HashSet<String>,
    /// Privacy-list denials, indexed like `Kind::ALL`.
    denied: [HashSet<String>; 4],
    /// Privacy-list `deny` items without children: QuickBlox's `mutualBlock`, which also stops
    /// the user's own messages to that JID ("block in two ways").
    mutual: HashSet<String>,
}

impl BlockRules {
    /// Rules from the block list's JIDs and the default privacy list's stored items (if any).
    pub fn new(blocked: impl IntoIterator<Item = String>, default_list: Option<&str>) -> Self {
        let mut rules = BlockRules {
            blocked: blocked
                .into_iter()
                .map(|j| j.to_ascii_lowercase())
                .collect(),
            denied: Default::default(),
            mutual: HashSet::new(),
        };
        if let Some(items) = default_list {
            for (index, kind) in Kind::ALL.into_iter().enumerate() {
                rules.denied[index] = denied_jids(items, kind).into_iter().collect();
            }
            rules.mutual = denied_jids(items, Kind::Unlisted).into_iter().collect();
        }
        rules
    }

    /// Whether the user refuses nothing at all (the common case).
    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
            && self.mutual.is_empty()
            && self.denied.iter().all(HashSet::is_empty)
    }

    /// Whether `kind` traffic between the user and `jid` (a bare JID) is refused.
    pub fn denies(&self, kind: Kind, jid: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let jid = jid.to_ascii_lowercase();
        self.blocked.contains(&jid)
            || Kind::ALL
                .iter()
                .position(|k| *k == kind)
                .is_some_and(|index| self.denied[index].contains(&jid))
    }

    /// Whether the user's own stanzas of `kind` to `jid` are refused: anything to a JID on
    /// the XEP-0191 block list (`Some(true)`), messages to a mutually blocked one
    /// (`Some(false)`), else `None`.
    pub fn refuses_outbound(&self, kind: Kind, jid: &str) -> Option<bool> {
        if self.blocked.is_empty() && self.mutual.is_empty() {
            return None;
        }
        let jid = jid.to_ascii_lowercase();
        if self.blocked.contains(&jid) {
            Some(true)
        } else if kind == Kind::MessageIn && self.mutual.contains(&jid) {
            Some(false)
        } else {
            None
        }
    }
}

/// The JIDs a privacy list denies for `kind`: for each JID, the first `jid` item (by `order`)
/// that applies to `kind` decides (XEP-0016 §2.2: first match wins, allow or deny). For
/// `Unlisted`, only items without children apply (QuickBlox's mutual blocks).
fn denied_jids(items: &str, kind: Kind) -> Vec<String> {
    let wrapped = format!("<list xmlns='jabber:iq:privacy'>{items}</list>");
    let Ok(list) = Element::parse(&wrapped, None) else {
        return Vec::new();
    };
    let mut ordered: Vec<&Element> = list.children().collect();
    ordered.sort_by_key(|item| {
        item.attr("order")
            .and_then(|o| o.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    let mut decided: HashSet<String> = HashSet::new();
    let mut denied = Vec::new();
    for item in ordered {
        let (Some("jid"), Some(value)) = (item.attr("type"), item.attr("value")) else {
            continue;
        };
        let applies = item.children().next().is_none()
            || (kind != Kind::Unlisted && item.children().any(|c| c.name() == kind.element()));
        let value = value.to_ascii_lowercase();
        if !applies || !decided.insert(value.clone()) {
            continue;
        }
        if item.attr("action") == Some("deny") {
            denied.push(value);
        }
    }
    denied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_item_decides_per_kind() {
        let items = "<item type='jid' value='2-1@d' action='allow' order='1'/>\
            <item type='jid' value='2-1@d' action='deny' order='2'/>\
            <item type='jid' value='3-1@D' action='deny' order='3'><message/></item>\
            <item type='jid' value='4-1@d' action='deny' order='4'><presence-in/></item>\
            <item type='jid' value='5-1@d' action='deny' order='6'/>\
            <item type='jid' value='5-1@d' action='allow' order='5'><iq/></item>";
        assert_eq!(denied_jids(items, Kind::MessageIn), ["3-1@d", "5-1@d"]);
        assert_eq!(denied_jids(items, Kind::PresenceIn), ["4-1@d", "5-1@d"]);
        assert_eq!(denied_jids(items, Kind::PresenceOut), ["5-1@d"]);
        assert!(denied_jids(items, Kind::IqIn).is_empty());
        assert!(
            denied_jids("<item", Kind::IqIn).is_empty(),
            "garbage denies nothing"
        );
    }

    #[test]
    fn quickblox_mutual_block_also_refuses_the_users_own_messages() {
        // What `QB.chat.privacylist.create` sends: one-way items name every kind, mutual
        // items name none.
        let items = "<item type='jid' value='2-1@d' action='deny' order='1'><message/>\
            <presence-in/><presence-out/><iq/></item>\
            <item type='jid' value='3-1@d' action='deny' order='3'/>\
            <item type='jid' value='4-1@d' action='allow' order='5'/>";
        let rules = BlockRules::new([], Some(items));
        for jid in ["2-1@d", "3-1@d"] {
            assert!(rules.denies(Kind::MessageIn, jid) && rules.denies(Kind::IqIn, jid));
        }
        assert_eq!(rules.refuses_outbound(Kind::MessageIn, "2-1@d"), None);
        assert_eq!(
            rules.refuses_outbound(Kind::MessageIn, "3-1@d"),
            Some(false)
        );
        assert_eq!(rules.refuses_outbound(Kind::IqIn, "3-1@d"), None);
        assert!(!rules.denies(Kind::MessageIn, "4-1@d"));
    }

    #[test]
    fn block_list_denies_everything_and_privacy_only_its_kinds() {
        let rules = BlockRules::new(
            ["7-1@D".to_string()],
            Some("<item type='jid' value='8-1@d' action='deny' order='1'><message/></item>"),
        );
        for kind in Kind::ALL {
            assert!(rules.denies(kind, "7-1@d"));
        }
        assert_eq!(rules.refuses_outbound(Kind::IqIn, "7-1@D"), Some(true));
        assert_eq!(
            rules.refuses_outbound(Kind::MessageIn, "8-1@d"),
            None,
            "one-way"
        );
        assert!(rules.denies(Kind::Unlisted, "7-1@d"));
        assert!(!rules.denies(Kind::Unlisted, "8-1@d"));
        assert!(rules.denies(Kind::MessageIn, "8-1@D"));
        assert!(!rules.denies(Kind::IqIn, "8-1@d"));
        assert!(!BlockRules::default().denies(Kind::MessageIn, "7-1@d"));
    }
}
