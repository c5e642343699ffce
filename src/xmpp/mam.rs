//! Message Archive Management (XEP-0313, `urn:xmpp:mam:2`) with Result Set Management
//! (XEP-0059) over the chat history store, so standard clients see what REST shows: the
//! user's archive (their private dialogs; `with` picks one peer) and each room's archive
//! (its dialog, for those who may read it).
//!
//! Pages are key sets on `(date_sent, seq)`: `<after>`/`<before>` name a message id (the
//! archive id is the history `_id`), an empty `<before/>` asks for the last page. Results
//! come before the `<fin/>`, in order; `complete` is set when the page reaches the end of the
//! range in its direction.

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::{escape_attr, Element, Jid};

use super::history::render;
use super::muc::RoomKey;
use super::reply::{Failure, Handled, Reply};
use super::session::Session;
use crate::chat::model::{DialogId, Message, ObjectId};
use crate::chat::query::parse_time;
use crate::clock;
use crate::store::HistoryRange;

pub(crate) const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";
const NS_DATA: &str = "jabber:x:data";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DELAY: &str = "urn:xmpp:delay";

/// Results per page when the client does not say, and the most it may ask for.
const DEFAULT_MAX: u32 = 50;
const MAX_MAX: u32 = 100;

/// A parsed MAM query.
#[derive(Debug, Default)]
struct Query {
    query_id: Option<String>,
    with: Option<Jid>,
    range: HistoryRange,
    after: Option<String>,
    before: Option<String>,
    /// `<before/>` without an id: the last page.
    last_page: bool,
}

impl Session {
    /// A MAM query to the user's own archive.
    pub(super) async fn user_archive(&self, iq: &Element) -> Handled {
        if iq.attr("type") == Some("get") {
            return Ok(self.result(iq, None, &form()));
        }
        let query = parse_query(iq)?;
        let dialogs = match &query.with {
            Some(with) => {
                let peer = self.local_user(with.bare()).ok_or_else(|| {
                    Failure::from(
                        StanzaError::new(StanzaErrorCondition::BadRequest)
                            .with_text("with names no user of this application"),
                    )
                })?;
                match self
                    .ctx
                    .chat
                    .store
                    .private_dialog(self.app, self.user, peer)
                    .await?
                {
                    Some(dialog) => vec![dialog.id],
                    None => Vec::new(),
                }
            }
            None => {
                self.ctx
                    .chat
                    .store
                    .private_dialogs_of(self.app, self.user)
                    .await?
            }
        };
        let me = self.my_bare().to_string();
        self.answer_query(iq, query, &dialogs, &me, |message| {
            (
                "chat",
                format!(
                    "{}-{}@{}",
                    message.sender.0,
                    message.app.0,
                    self.ctx.domain()
                ),
                message
                    .recipient
                    .map(|r| format!("{}-{}@{}", r.0, message.app.0, self.ctx.domain()))
                    .unwrap_or_default(),
            )
        })
        .await
    }

    /// A MAM query to a room's archive.
    pub(crate) async fn room_archive(&self, iq: &Element, key: RoomKey) -> Handled {
        let room = format!("{}_{}@muc.{}", key.0 .0, key.1, self.ctx.domain());
        let dialog = self
            .ctx
            .chat
            .readable_dialog(self.app, self.user, &key.1)
            .await
            .map_err(super::message::chat_failure)?;
        if !dialog.kind.has_room() {
            return Err(StanzaErrorCondition::ItemNotFound.into());
        }
        if iq.attr("type") == Some("get") {
            return Ok(self.result(iq, Some(&room), &form()));
        }
        let mut query = parse_query(iq)?;
        if let Some(with) = query.with.take() {
            // In a room, `with` is an occupant JID `room/{userId}`.
            query.range.sender = with
                .resource()
                .and_then(|r| r.parse::<i64>().ok())
                .map(crate::model::UserId);
        }
        let room_for = room.clone();
        self.answer_query(iq, query, &[dialog.id], &room, move |message| {
            (
                "groupchat",
                format!("{room_for}/{}", message.sender.0),
                room_for.clone(),
            )
        })
        .await
    }

    async fn answer_query(
        &self,
        iq: &Element,
        mut query: Query,
        dialogs: &[DialogId],
        archive: &str,
        addresses: impl Fn(&Message) -> (&'static str, String, String),
    ) -> Handled {
        let store = &self.ctx.chat.store;
        let key_of = |id: &str| {
            let id = ObjectId::parse(id);
            async move {
                match id {
                    Some(id) => store.history_key(dialogs, &id).await.map_err(Failure::from),
                    None => Ok(None),
                }
            }
        };
        let item_not_found = || {
            Failure::from(
                StanzaError::new(StanzaErrorCondition::ItemNotFound)
                    .with_text("No such archive id"),
            )
        };
        if let Some(after) = &query.after {
            query.range.after = Some(key_of(after).await?.ok_or_else(item_not_found)?);
        }
        if let Some(before) = &query.before {
            query.range.before = Some(key_of(before).await?.ok_or_else(item_not_found)?);
            query.range.from_end = true;
        }
        if query.last_page {
            query.range.from_end = true;
        }
        let max = query.range.limit;
        // One more than asked says whether the range goes on.
        query.range.limit = max + 1;
        let mut page = store.history_page(dialogs, self.user, &query.range).await?;
        let more = page.len() > max as usize;
        if more {
            if query.range.from_end {
                page.remove(0);
            } else {
                page.pop();
            }
        }
        let count = store
            .history_count(dialogs, self.user, &query.range)
            .await?;
        let me = self.me().to_string();
        let query_id = query
            .query_id
            .as_deref()
            .map(|q| format!(" queryid='{}'", escape_attr(q)))
            .unwrap_or_default();
        let mut replies: Vec<Reply> = Vec::with_capacity(page.len() + 1);
        for message in &page {
            let forwarded = match &message.stanza {
                Some(stanza) => in_client_namespace(stanza),
                None => {
                    let (kind, from, to) = addresses(message);
                    render(message, kind, &from, &to)
                }
            };
            replies.push((
                format!(
                    "<message from='{}' to='{}'><result xmlns='{NS_MAM}'{query_id} id='{}'><forwarded xmlns='{NS_FORWARD}'><delay xmlns='{NS_DELAY}' stamp='{}'/>{forwarded}</forwarded></result></message>",
                    escape_attr(archive),
                    escape_attr(&me),
                    message.id,
                    clock::iso8601(message.date_sent),
                ),
                Urgency::Urgent,
            ));
        }
        let set = match (page.first(), page.last()) {
            (Some(first), Some(last)) => format!(
                "<set xmlns='{NS_RSM}'><first>{}</first><last>{}</last><count>{count}</count></set>",
                first.id, last.id
            ),
            _ => format!("<set xmlns='{NS_RSM}'><count>{count}</count></set>"),
        };
        let complete = if more { "" } else { " complete='true'" };
        let from = (archive != self.my_bare().to_string()).then_some(archive);
        replies.extend(self.result(
            iq,
            from,
            &format!("<fin xmlns='{NS_MAM}'{complete}>{set}</fin>"),
        ));
        Ok(replies)
    }
}

/// Reads the data form and the RSM set of a `<query xmlns='urn:xmpp:mam:2'>`.
fn parse_query(iq: &Element) -> Result<Query, Failure> {
    let bad = |text: &str| {
        Failure::from(StanzaError::new(StanzaErrorCondition::BadRequest).with_text(text))
    };
    let query_element = iq.child("query", NS_MAM).ok_or_else(|| bad("no query"))?;
    let mut query = Query {
        query_id: query_element.attr("queryid").map(str::to_string),
        ..Query::default()
    };
    query.range.limit = DEFAULT_MAX;
    if let Some(form) = query_element.child("x", NS_DATA) {
        for field in form.children().filter(|c| c.name() == "field") {
            let value = field
                .children()
                .find(|c| c.name() == "value")
                .map(|v| v.text())
                .unwrap_or_default();
            let value = value.trim();
            match field.attr("var") {
                Some("FORM_TYPE") if !value.is_empty() && value != NS_MAM => {
                    return Err(bad("FORM_TYPE must be urn:xmpp:mam:2"))
                }
                Some("with") if !value.is_empty() => {
                    query.with = Some(Jid::parse(value).map_err(|_| bad("with is not a JID"))?)
                }
                Some("start") if !value.is_empty() => {
                    query.range.start =
                        Some(parse_time(value).ok_or_else(|| bad("start is not a date"))?)
                }
                Some("end") if !value.is_empty() => {
                    query.range.end =
                        Some(parse_time(value).ok_or_else(|| bad("end is not a date"))?)
                }
                Some("after-id") if !value.is_empty() => query.after = Some(value.to_string()),
                Some("before-id") if !value.is_empty() => query.before = Some(value.to_string()),
                _ => {}
            }
        }
    }
    if let Some(set) = query_element.child("set", NS_RSM) {
        for item in set.children() {
            let text = item.text();
            match item.name() {
                "max" => {
                    let max: u32 = text
                        .trim()
                        .parse()
                        .map_err(|_| bad("max is not a number"))?;
                    query.range.limit = max.min(MAX_MAX);
                }
                "after" => query.after = Some(text.trim().to_string()),
                "before" if text.trim().is_empty() => query.last_page = true,
                "before" => query.before = Some(text.trim().to_string()),
                "index" => return Err(StanzaErrorCondition::FeatureNotImplemented.into()),
                _ => {}
            }
        }
    }
    Ok(query)
}

/// The search form (XEP-0313 §5.1.1).
fn form() -> String {
    format!(
        "<query xmlns='{NS_MAM}'><x xmlns='{NS_DATA}' type='form'>\
         <field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>\
         <field var='with' type='jid-single'/><field var='start' type='text-single'/>\
         <field var='end' type='text-single'/><field var='after-id' type='text-single'/>\
         <field var='before-id' type='text-single'/></x></query>"
    )
}

/// A stored stanza inside `<forwarded/>` must say it is `jabber:client` (it was written with
/// the stream's default namespace).
fn in_client_namespace(stanza: &str) -> String {
    let tag_end = stanza.find('>').unwrap_or(stanza.len());
    if stanza[..tag_end].contains(" xmlns=") {
        return stanza.to_string();
    }
    let name_end = stanza[1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map_or(stanza.len(), |i| i + 1);
    format!(
        "{} xmlns='jabber:client'{}",
        &stanza[..name_end],
        &stanza[name_end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_stanzas_get_the_client_namespace() {
        assert_eq!(
            in_client_namespace("<message to='a' id='1'><body>x</body></message>"),
            "<message xmlns='jabber:client' to='a' id='1'><body>x</body></message>"
        );
        let declared = "<message xmlns='jabber:client' to='a'/>";
        assert_eq!(in_client_namespace(declared), declared);
    }

    #[test]
    fn queries_are_read_from_form_and_set() {
        let iq = Element::parse(
            "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2' queryid='f27'>\
             <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>8-1@d</value></field><field var='start'><value>2010-06-07T00:00:00Z</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>",
            Some("jabber:client"),
        )
        .unwrap();
        let query = parse_query(&iq).unwrap();
        assert_eq!(query.query_id.as_deref(), Some("f27"));
        assert_eq!(query.with.unwrap().to_string(), "8-1@d");
        assert_eq!(query.range.start, Some(1_275_868_800));
        assert_eq!(query.range.limit, 2);
        assert!(query.last_page);
        let huge = Element::parse(
            "<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max></set></query></iq>",
            Some("jabber:client"),
        )
        .unwrap();
        assert_eq!(parse_query(&huge).unwrap().range.limit, MAX_MAX);
    }
}
