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
        };
        if let Some(items) = default_list {
            for (index, kind) in Kind::ALL.into_iter().enumerate() {
                rules.denied[index] = denied_jids(items, kind).into_iter().collect();
            }
        }
        rules
    }

    /// Whether `kind` traffic between the user and `jid` (a bare JID) is refused.
    pub fn denies(&self, kind: Kind, jid: &str) -> bool {
        if self.blocked.is_empty() && self.denied.iter().all(HashSet::is_empty) {
            return false;
        }
        let jid = jid.to_ascii_lowercase();
        self.blocked.contains(&jid)
            || Kind::ALL
                .iter()
                .position(|k| *k == kind)
                .is_some_and(|index| self.denied[index].contains(&jid))
    }

    /// Whether `jid` is on the XEP-0191 block list (outbound stanzas to it are refused too).
    pub fn blocks(&self, jid: &str) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(&jid.to_ascii_lowercase())
    }
}

/// The JIDs a privacy list denies for `kind`: for each JID, the first `jid` item (by `order`)
/// that applies to `kind` decides (XEP-0016 §2.2: first match wins, allow or deny).
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
        let applies =
            item.children().next().is_none() || item.children().any(|c| c.name() == kind.element());
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
    fn block_list_denies_everything_and_privacy_only_its_kinds() {
        let rules = BlockRules::new(
            ["7-1@D".to_string()],
            Some("<item type='jid' value='8-1@d' action='deny' order='1'><message/></item>"),
        );
        for kind in Kind::ALL {
            assert!(rules.denies(kind, "7-1@d"));
        }
        assert!(rules.blocks("7-1@d") && !rules.blocks("8-1@d"));
        assert!(rules.denies(Kind::Unlisted, "7-1@d"));
        assert!(!rules.denies(Kind::Unlisted, "8-1@d"));
        assert!(rules.denies(Kind::MessageIn, "8-1@D"));
        assert!(!rules.denies(Kind::IqIn, "8-1@d"));
        assert!(!BlockRules::default().denies(Kind::MessageIn, "7-1@d"));
    }
}
