//! What one user refuses, per stanza kind: their XEP-0191 block list plus the `jid` items of
//! their default XEP-0016 privacy list (QuickBlox blocks users with privacy lists), and where
//! routing asks: [`Session::refusal`] for messages, iqs and subscriptions, and
//! [`Session::presence_allowed`] for presence.
//!
//! Built from the store once per user and kept in a bounded cache ([`BlockCache`]); every
//! change to either list drops the cached copy.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::{BareJid, Element, Stanza, StanzaKind};

use super::reply::{Failure, Reply};
use super::session::Session;
use crate::model::UserId;
use crate::store::StoreError;

/// Users' rules, loaded on first use so the routing path does no storage reads, dropped when
/// the user changes a list, and bounded: past `capacity` users some entries make room (a
/// dropped entry costs one reload, never a wrong answer).
#[derive(Debug)]
pub struct BlockCache {
    rules: DashMap<UserId, Arc<BlockRules>>,
    /// Bumped by every change to any user's lists, so a load that raced a change never leaves
    /// stale rules cached.
    epoch: AtomicU64,
    capacity: usize,
    /// Eviction rounds so far (varies which users give way).
    rounds: AtomicU64,
}

impl BlockCache {
    /// An empty cache holding at most `capacity` users' rules.
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            rules: DashMap::new(),
            epoch: AtomicU64::new(0),
            capacity: capacity.max(1),
            rounds: AtomicU64::new(0),
        }
    }

    /// Number of users whose rules are cached.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn get(&self, user: UserId) -> Option<Arc<BlockRules>> {
        self.rules.get(&user).map(|rules| rules.clone())
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches rules read from the store when the epoch was `read_at`.
    fn insert(&self, user: UserId, rules: Arc<BlockRules>, read_at: u64) {
        if self.rules.len() >= self.capacity {
            self.make_room();
        }
        self.rules.insert(user, rules);
        // A change that landed while the store was read may have been cleared from the cache
        // before this insert: then what was read may be stale, and must not stay cached.
        if self.epoch() != read_at {
            self.rules.remove(&user);
        }
    }

    /// Drops about an eighth of the entries, picked by a hash of the user id that changes
    /// every round, so every shard and every user gives way in turn (one pass per eighth of
    /// the capacity inserted: constant work per insert on average).
    fn make_room(&self) {
        for _ in 0..64 {
            let round =
                u32::try_from(self.rounds.fetch_add(1, Ordering::Relaxed) % 64).expect("below 64");
            self.rules.retain(|user, _| {
                let mixed = (user.0 as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(round);
                mixed % 8 != 0
            });
            if self.rules.len() < self.capacity {
                return;
            }
        }
        // Only reachable with a handful of entries that all hashed the wrong way.
        let victim = self.rules.iter().next().map(|entry| *entry.key());
        if let Some(victim) = victim {
            self.rules.remove(&victim);
        }
    }

    /// Forgets `user`'s rules after they changed a list.
    pub fn invalidate(&self, user: UserId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.rules.remove(&user);
    }
}

/// How a refused stanza is answered.
enum Refusal {
    /// With this error.
    Answer(StanzaError),
    /// Not at all (presence).
    Silent,
}

impl Session {
    /// What `user` refuses, from the cache or the store.
    async fn rules_of(&self, user: UserId) -> Result<Arc<BlockRules>, StoreError> {
        if let Some(rules) = self.ctx.blocks.get(user) {
            return Ok(rules);
        }
        Box::pin(self.load_rules(user)).await
    }

    /// Reads `user`'s rules from the store into the cache.
    async fn load_rules(&self, user: UserId) -> Result<Arc<BlockRules>, StoreError> {
        let read_at = self.ctx.blocks.epoch();
        let store = &self.ctx.store;
        let blocked = store.block_list(user).await?;
        let default_list = match store.privacy_list_names(user).await? {
            (_, Some(default)) => store.privacy_list(user, &default).await?,
            (_, None) => None,
        };
        let rules = Arc::new(BlockRules::new(blocked, default_list.as_deref()));
        self.ctx.blocks.insert(user, rules.clone(), read_at);
        Ok(rules)
    }

    /// The bounce for a stanza of `kind` to `user` that either side refuses, if refused:
    /// our own XEP-0191 block gives `not-acceptable` with `<blocked/>` (XEP-0191 §3.4), our own
    /// QuickBlox mutual block (a privacy item without children) plain `not-acceptable`, the
    /// recipient's rules `service-unavailable` (as if they were not there, XEP-0016 §2.2) or,
    /// for presence, silence. Rules that cannot be read refuse with `internal-server-error`
    /// rather than let a blocked sender through.
    pub(super) async fn refusal(
        &self,
        stanza: &Stanza,
        user: UserId,
        bare: &BareJid,
        kind: Kind,
    ) -> Option<Vec<Reply>> {
        match self.refused(stanza, user, bare, kind).await {
            Ok(None) => None,
            Ok(Some(Refusal::Silent)) => Some(Vec::new()),
            Ok(Some(Refusal::Answer(error))) => Some(self.answer(stanza, Err(error.into()))),
            Err(error) => Some(self.answer(stanza, Err(Failure::Store(error)))),
        }
    }

    async fn refused(
        &self,
        stanza: &Stanza,
        user: UserId,
        bare: &BareJid,
        kind: Kind,
    ) -> Result<Option<Refusal>, StoreError> {
        if user == self.user {
            return Ok(None);
        }
        // Most users block nobody: then no JID is even formatted.
        let mine = self.rules_of(self.user).await?;
        let outbound = if mine.is_empty() {
            None
        } else {
            mine.refuses_outbound(kind, &bare.to_string())
        };
        if let Some(blocking_command) = outbound {
            let mut error = StanzaError::new(StanzaErrorCondition::NotAcceptable);
            if blocking_command {
                error = error.with_app_specific("<blocked xmlns='urn:xmpp:blocking:errors'/>");
            }
            return Ok(Some(Refusal::Answer(error)));
        }
        let theirs = self.rules_of(user).await?;
        if !theirs.is_empty() && theirs.denies(kind, &self.my_bare().to_string()) {
            // Presence from someone refused vanishes; it is never answered.
            if stanza.envelope().kind() == StanzaKind::Presence {
                return Ok(Some(Refusal::Silent));
            }
            return Ok(Some(Refusal::Answer(StanzaError::new(
                StanzaErrorCondition::ServiceUnavailable,
            ))));
        }
        Ok(None)
    }

    /// Whether presence may flow from `from` (bare, user id) to `to`: the sender's
    /// `presence-out` and the recipient's `presence-in` rules (and either's block list).
    /// When the rules cannot be read, `unavailable` still goes (a contact must not keep seeing
    /// someone online who left) and `available` does not.
    pub(super) async fn presence_allowed(
        &self,
        from: (UserId, &BareJid),
        to: (UserId, &BareJid),
        available: bool,
    ) -> bool {
        if from.0 == to.0 {
            return true;
        }
        let allowed = async {
            if self
                .rules_of(from.0)
                .await?
                .denies(Kind::PresenceOut, &to.1.to_string())
            {
                return Ok(false);
            }
            let recipient = self.rules_of(to.0).await?;
            Ok::<_, StoreError>(!recipient.denies(Kind::PresenceIn, &from.1.to_string()))
        };
        match allowed.await {
            Ok(allowed) => allowed,
            Err(error) => {
                tracing::error!(%error, available, "reading block rules for presence failed");
                !available
            }
        }
    }

    /// Forgets the cached block rules of this session's user after they changed.
    pub(super) fn blocks_changed(&self) {
        self.ctx.blocks.invalidate(self.user);
    }
}

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
    fn the_cache_stays_within_its_capacity_and_drops_what_raced_a_change() {
        let cache = BlockCache::new(64);
        for user in 1..=10_000 {
            cache.insert(UserId(user), Arc::default(), cache.epoch());
            assert!(cache.len() <= 64, "{} cached", cache.len());
            assert!(
                cache.get(UserId(user)).is_some(),
                "the newest entry is kept"
            );
        }
        let read_at = cache.epoch();
        cache.invalidate(UserId(9));
        cache.insert(UserId(6), Arc::default(), read_at);
        assert!(
            cache.get(UserId(6)).is_none(),
            "read before a change: not cached"
        );
    }

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
