//! One dialog room's state and rules, without I/O (XEP-0045 with the QuickBlox rules of XMPP
//! reference §9): who is in, what each join, leave, message and removal sends to whom. The
//! room task (`task.rs`) feeds it and delivers what it returns.
//!
//! QuickBlox rules kept here:
//! - The nickname is the user's numeric id; occupant JIDs are `room/{userId}`.
//! - A joiner first gets every other occupant's presence (no `<status>`, no join id), then its
//!   own presence echoing the join id, muc#user `<x>` first with status 110 first.
//! - Occupants joining and leaving are announced to the others with no `<status>` (the SDK
//!   fires its join/leave listeners only then).
//! - A removed user alone gets status 301 with the actor; the others a plain `unavailable`.
//! - Groupchat is reflected to every occupant, the sender included.
//! - Type 2 dialogs are members-only; anyone in the application may join a type 1 dialog.
//!
//! One user may be in the room from several resources (one occupant, several sessions); the
//! others see them join with the first and leave with the last.

use xmpp_proto::{escape_attr, BareJid, FullJid, Stanza};

use crate::chat::model::Dialog;
use crate::model::UserId;

/// XEP-0045 namespaces.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";

/// A stanza for one session.
pub type Out = (FullJid, String);

/// Why a join is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// Not an occupant of a members-only (type 2) dialog.
    NotMember,
    /// The nickname is not the user's id.
    WrongNick,
}

#[derive(Debug, Clone)]
struct Occupant {
    user: UserId,
    /// The user's JID (`{id}-{app}@domain`), for `<item jid>`.
    jid: BareJid,
    sessions: Vec<FullJid>,
}

/// The live state of one dialog's room.
#[derive(Debug)]
pub struct Room {
    jid: BareJid,
    dialog: Dialog,
    /// In join order.
    occupants: Vec<Occupant>,
}

impl Room {
    pub fn new(jid: BareJid, dialog: Dialog) -> Room {
        Room {
            jid,
            dialog,
            occupants: Vec::new(),
        }
    }

    pub fn jid(&self) -> &BareJid {
        &self.jid
    }

    pub fn dialog(&self) -> &Dialog {
        &self.dialog
    }

    pub fn is_empty(&self) -> bool {
        self.occupants.is_empty()
    }

    /// The users in the room, in join order (disco#items, `listOnlineUsers`).
    pub fn users(&self) -> Vec<UserId> {
        self.occupants.iter().map(|o| o.user).collect()
    }

    /// Whether this session is in the room, and as whom.
    pub fn occupant_of(&self, session: &FullJid) -> Option<UserId> {
        self.occupants
            .iter()
            .find(|o| o.sessions.contains(session))
            .map(|o| o.user)
    }

    /// Whether `user` may be in the room at all.
    pub fn may_join(&self, user: UserId) -> bool {
        self.dialog.may_read(user)
    }

    /// A session joins as `nick`. Returns the presences to send, joiner's first.
    pub fn join(
        &mut self,
        session: &FullJid,
        user: UserId,
        user_jid: &BareJid,
        nick: &str,
        join_id: Option<&str>,
    ) -> Result<Vec<Out>, JoinRefusal> {
        if nick != user.0.to_string() {
            return Err(JoinRefusal::WrongNick);
        }
        if !self.may_join(user) {
            return Err(JoinRefusal::NotMember);
        }
        let mut out = Vec::new();
        let known = self.occupants.iter().position(|o| o.user == user);
        for other in self.occupants.iter().filter(|o| o.user != user) {
            out.push((
                session.clone(),
                self.presence(other, session, None, &[], false),
            ));
        }
        let first_session = match known {
            Some(index) => {
                let occupant = &mut self.occupants[index];
                if !occupant.sessions.contains(session) {
                    occupant.sessions.push(session.clone());
                }
                false
            }
            None => {
                self.occupants.push(Occupant {
                    user,
                    jid: user_jid.clone(),
                    sessions: vec![session.clone()],
                });
                true
            }
        };
        let me = self.occupant(user).expect("just added").clone();
        out.push((
            session.clone(),
            self.presence(&me, session, join_id, &["110"], false),
        ));
        if first_session {
            out.extend(self.to_others(user, |room, to| room.presence(&me, to, None, &[], false)));
        }
        Ok(out)
    }

    /// A session leaves (or went away: `confirm` false sends it nothing).
    pub fn leave(&mut self, session: &FullJid, leave_id: Option<&str>, confirm: bool) -> Vec<Out> {
        let Some(index) = self
            .occupants
            .iter()
            .position(|o| o.sessions.contains(session))
        else {
            return Vec::new();
        };
        let occupant = self.occupants[index].clone();
        let mut out = Vec::new();
        if confirm {
            out.push((
                session.clone(),
                self.presence(&occupant, session, leave_id, &["110"], true),
            ));
        }
        self.occupants[index].sessions.retain(|s| s != session);
        if self.occupants[index].sessions.is_empty() {
            self.occupants.remove(index);
            out.extend(self.to_others(occupant.user, |room, to| {
                room.presence(&occupant, to, None, &[], true)
            }));
        }
        out
    }

    /// `user` was removed from the dialog by `actor` (REST `pull_all`, or left it): their
    /// sessions get 301 with the actor, the others a plain `unavailable`.
    pub fn remove(&mut self, user: UserId, actor: &BareJid) -> Vec<Out> {
        let Some(index) = self.occupants.iter().position(|o| o.user == user) else {
            return Vec::new();
        };
        let occupant = self.occupants.remove(index);
        let mut out = Vec::new();
        for session in &occupant.sessions {
            out.push((session.clone(), self.kicked(&occupant, session, actor)));
        }
        out.extend(self.to_others(user, |room, to| {
            room.presence(&occupant, to, None, &[], true)
        }));
        out
    }

    /// The dialog changed (REST update): occupants no longer allowed are removed.
    pub fn set_dialog(&mut self, dialog: Dialog, actor: &BareJid) -> Vec<Out> {
        self.dialog = dialog;
        let gone: Vec<UserId> = self
            .occupants
            .iter()
            .map(|o| o.user)
            .filter(|user| !self.dialog.may_read(*user))
            .collect();
        gone.into_iter()
            .flat_map(|user| self.remove(user, actor))
            .collect()
    }

    /// The dialog was deleted: everyone leaves (as removed by the owner).
    pub fn close(&mut self, actor: &BareJid) -> Vec<Out> {
        let users = self.users();
        users
            .into_iter()
            .flat_map(|user| self.remove(user, actor))
            .collect()
    }

    /// A groupchat message from `sender` (already stored and injected, if it asked), for every
    /// occupant session, the sender's included, from `room/{sender}`.
    pub fn broadcast(&self, sender: UserId, stanza: &Stanza) -> Vec<Out> {
        let from = self.occupant_jid(sender);
        self.occupants
            .iter()
            .flat_map(|o| o.sessions.iter())
            .map(|session| {
                (
                    session.clone(),
                    stanza.with_from_to(Some(&from), Some(&session.to_string())),
                )
            })
            .collect()
    }

    /// Every occupant session, for messages rendered per recipient.
    pub fn sessions(&self) -> impl Iterator<Item = &FullJid> {
        self.occupants.iter().flat_map(|o| o.sessions.iter())
    }

    /// `room/{user}`.
    pub fn occupant_jid(&self, user: UserId) -> String {
        format!("{}/{}", self.jid, user.0)
    }

    fn occupant(&self, user: UserId) -> Option<&Occupant> {
        self.occupants.iter().find(|o| o.user == user)
    }

    fn to_others(&self, user: UserId, render: impl Fn(&Room, &FullJid) -> String) -> Vec<Out> {
        self.occupants
            .iter()
            .filter(|o| o.user != user)
            .flat_map(|o| o.sessions.iter())
            .map(|session| (session.clone(), render(self, session)))
            .collect()
    }

    fn item(&self, occupant: &Occupant, unavailable: bool) -> String {
        let owner = occupant.user == self.dialog.owner;
        let affiliation = if owner { "owner" } else { "member" };
        let role = match (unavailable, owner) {
            (true, _) => "none",
            (false, true) => "moderator",
            (false, false) => "participant",
        };
        format!(
            "<item affiliation='{affiliation}' role='{role}' jid='{}'/>",
            escape_attr(&occupant.jid.to_string())
        )
    }

    /// An occupant's presence for `to`: muc#user `<x>` first, statuses in the given order.
    fn presence(
        &self,
        occupant: &Occupant,
        to: &FullJid,
        id: Option<&str>,
        statuses: &[&str],
        unavailable: bool,
    ) -> String {
        let id = id
            .map(|id| format!(" id='{}'", escape_attr(id)))
            .unwrap_or_default();
        let kind = if unavailable {
            " type='unavailable'"
        } else {
            ""
        };
        let statuses: String = statuses
            .iter()
            .map(|code| format!("<status code='{code}'/>"))
            .collect();
        format!(
            "<presence from='{}' to='{}'{id}{kind}><x xmlns='{NS_MUC_USER}'>{}{statuses}</x></presence>",
            escape_attr(&self.occupant_jid(occupant.user)),
            escape_attr(&to.to_string()),
            self.item(occupant, unavailable),
        )
    }

    /// The 301 presence to a removed user's session, naming who removed them (the SDK reads
    /// `<actor jid>` and throws without it).
    fn kicked(&self, occupant: &Occupant, to: &FullJid, actor: &BareJid) -> String {
        format!(
            "<presence from='{}' to='{}' type='unavailable'><x xmlns='{NS_MUC_USER}'><item affiliation='none' role='none'><actor jid='{}'/></item><status code='301'/></x></presence>",
            escape_attr(&self.occupant_jid(occupant.user)),
            escape_attr(&to.to_string()),
            escape_attr(&actor.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::model::{DialogType, ObjectId};
    use crate::model::AppId;

    fn dialog(kind: DialogType, occupants: &[i64]) -> Dialog {
        Dialog {
            id: ObjectId::parse("5f0c00000000000000000001").unwrap(),
            app: AppId(42),
            kind,
            owner: UserId(occupants[0]),
            name: Some("Team".into()),
            photo: None,
            is_join_required: false,
            data: None,
            occupants: occupants.iter().copied().map(UserId).collect(),
            last_message: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn room(kind: DialogType, occupants: &[i64]) -> Room {
        Room::new(
            BareJid::parse("42_5f0c00000000000000000001@muc.dom").unwrap(),
            dialog(kind, occupants),
        )
    }

    fn session(user: i64, resource: &str) -> FullJid {
        FullJid::parse(&format!("{user}-42@dom/{resource}")).unwrap()
    }

    fn bare(user: i64) -> BareJid {
        BareJid::parse(&format!("{user}-42@dom")).unwrap()
    }

    fn join(room: &mut Room, user: i64, resource: &str, id: &str) -> Vec<Out> {
        room.join(
            &session(user, resource),
            UserId(user),
            &bare(user),
            &user.to_string(),
            Some(id),
        )
        .unwrap()
    }

    #[test]
    fn the_quickblox_join_handshake() {
        let mut room = room(DialogType::Group, &[7, 8, 9]);
        let first = join(&mut room, 7, "r1", "u1:join");
        assert_eq!(first.len(), 1, "alone: only the self-presence");
        assert_eq!(
            first[0].1,
            "<presence from='42_5f0c00000000000000000001@muc.dom/7' to='7-42@dom/r1' id='u1:join'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator' jid='7-42@dom'/><status code='110'/></x></presence>"
        );
        let second = join(&mut room, 8, "r2", "u2:join");
        // To the joiner: 7's presence (no status, no id), then its own with the id and 110;
        // then 7 hears of 8 (no status).
        assert_eq!(second.len(), 3);
        assert_eq!(second[0].0, session(8, "r2"));
        assert!(second[0].1.starts_with(
            "<presence from='42_5f0c00000000000000000001@muc.dom/7' to='8-42@dom/r2'><x"
        ));
        assert!(!second[0].1.contains("status") && !second[0].1.contains(" id='"));
        assert_eq!(second[1].0, session(8, "r2"));
        assert!(
            second[1].1.contains(" id='u2:join'")
                && second[1].1.contains("<status code='110'/></x>")
        );
        assert_eq!(second[2].0, session(7, "r1"));
        assert!(!second[2].1.contains("status") && second[2].1.contains("/8'"));
        assert_eq!(room.users(), vec![UserId(7), UserId(8)]);
    }

    #[test]
    fn members_only_and_nicknames() {
        let mut group = room(DialogType::Group, &[7, 8]);
        let outsider = group.join(&session(9, "r"), UserId(9), &bare(9), "9", None);
        assert_eq!(outsider, Err(JoinRefusal::NotMember));
        let nick = group.join(&session(8, "r"), UserId(8), &bare(8), "bob", None);
        assert_eq!(nick, Err(JoinRefusal::WrongNick));
        let mut public = room(DialogType::PublicGroup, &[7]);
        assert!(public
            .join(&session(9, "r"), UserId(9), &bare(9), "9", None)
            .is_ok());
    }

    #[test]
    fn second_resources_are_not_announced_twice() {
        let mut room = room(DialogType::Group, &[7, 8]);
        join(&mut room, 7, "r1", "a");
        join(&mut room, 8, "r1", "b");
        let again = join(&mut room, 8, "r2", "c");
        assert_eq!(
            again.len(),
            2,
            "7's presence and the self-presence; 7 is not told"
        );
        assert!(
            room.leave(&session(8, "r1"), None, true).len() == 1,
            "still in from r2"
        );
        let last = room.leave(&session(8, "r2"), Some("x"), true);
        assert_eq!(last.len(), 2);
        assert!(
            last[0].1.contains("type='unavailable'") && last[0].1.contains("<status code='110'/>")
        );
        assert_eq!(last[1].0, session(7, "r1"));
        assert!(last[1].1.contains("type='unavailable'") && !last[1].1.contains("status"));
    }

    #[test]
    fn removal_tells_only_the_removed_user_301() {
        let mut room = room(DialogType::Group, &[7, 8, 9]);
        join(&mut room, 7, "r", "a");
        join(&mut room, 8, "r", "b");
        join(&mut room, 9, "r", "c");
        let out = room.remove(UserId(8), &bare(7));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0, session(8, "r"));
        assert!(
            out[0].1.contains("<actor jid='7-42@dom'/>")
                && out[0].1.contains("<status code='301'/>")
        );
        for (to, text) in &out[1..] {
            assert_ne!(*to, session(8, "r"));
            assert!(!text.contains("301") && !text.contains("status"), "{text}");
        }
        // Losing membership through a dialog update removes the same way.
        let out = room.set_dialog(dialog(DialogType::Group, &[7]), &bare(7));
        assert!(out[0].1.contains("301"));
        assert_eq!(room.users(), vec![UserId(7)]);
    }

    #[test]
    fn groupchat_is_reflected_to_everyone() {
        let mut room = room(DialogType::Group, &[7, 8]);
        join(&mut room, 7, "r", "a");
        join(&mut room, 8, "r", "b");
        let stanza = crate::xmpp::reply::parse_stanza(
            "<message type='groupchat' id='m1' to='42_5f0c00000000000000000001@muc.dom'><body>hi</body></message>",
        )
        .unwrap();
        let out = room.broadcast(UserId(7), &stanza);
        assert_eq!(out.len(), 2);
        for (to, text) in &out {
            assert!(text.contains("from='42_5f0c00000000000000000001@muc.dom/7'"));
            assert!(text.contains(&format!("to='{to}'")));
            assert!(text.contains("id='m1'"));
        }
    }
}
