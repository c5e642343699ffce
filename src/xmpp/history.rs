//! Chat history from XMPP (XMPP reference §8.2, §8.3): a message with
//! `extraParams/save_to_history` is stored in its dialog before it is routed, under the
//! client's stanza id, and the routed copy gets `dialog_id`, `message_id` and `date_sent` in
//! its `extraParams`; a 1:1 message without a dialog creates the pair's private dialog; chat
//! markers (`received`, `displayed`) set delivered/read; a XEP-0308 correction replaces the
//! stored text.
//!
//! Everything is read with [`children`] (no tree), and the injection rewrites only the
//! `extraParams` element: every other byte of the stanza is forwarded as sent.

use serde_json::{Map, Value};
use xmpp_proto::xml::{children, ns};
use xmpp_proto::{escape_attr, escape_text, Element, Stanza};

use super::classify::{Marker, MessageTraits};
use super::session::Session;
use crate::chat::history::live_date_sent;
use crate::chat::model::{DialogId, Mark, Message, MessageId, ObjectId};
use crate::chat::writer::Pending;
use crate::chat::ChatError;
use crate::clock;
use crate::model::UserId;

/// XEP-0308 last message correction.
pub const NS_CORRECT: &str = "urn:xmpp:message-correct:0";
const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";

/// `extraParams` fields that are the model's, not custom parameters.
const MODEL_FIELDS: &[&str] = &[
    "save_to_history",
    "dialog_id",
    "message_id",
    "date_sent",
    "attachment",
];

/// What a message carries for history, read in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFields {
    pub body: Option<String>,
    pub dialog_id: Option<DialogId>,
    pub date_sent: Option<i64>,
    pub attachments: Vec<Map<String, Value>>,
    pub custom: Map<String, Value>,
    pub markable: bool,
    /// XEP-0308: the id of the message this one corrects.
    pub replaces: Option<String>,
    /// The `id` of a `received`/`displayed` marker.
    pub marker_id: Option<String>,
}

impl HistoryFields {
    pub fn read(stanza: &str) -> HistoryFields {
        let mut fields = HistoryFields::default();
        for child in children(stanza, ns::CLIENT) {
            match (child.namespace.as_ref(), child.name) {
                (ns::CLIENT, "body") => fields.body = child.text().map(|t| t.into_owned()),
                (NS_CORRECT, "replace") => fields.replaces = attr(child.element, "id"),
                (NS_MARKERS, "markable") => fields.markable = true,
                (NS_MARKERS, "received" | "displayed") => {
                    fields.marker_id = attr(child.element, "id")
                }
                (_, "extraParams") => {
                    for field in children(child.element, &child.namespace) {
                        let text = || field.text().map(|t| t.trim().to_string());
                        match field.name {
                            "dialog_id" => {
                                fields.dialog_id = text().and_then(|t| ObjectId::parse(&t))
                            }
                            "date_sent" => {
                                fields.date_sent = text()
                                    .and_then(|t| t.parse::<f64>().ok())
                                    .filter(|t| t.is_finite())
                                    .map(|t| t.trunc() as i64)
                            }
                            "attachment" => {
                                if let Ok(element) =
                                    Element::parse(field.element, Some(&field.namespace))
                                {
                                    let map: Map<String, Value> = element
                                        .attrs()
                                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                                        .collect();
                                    fields.attachments.push(map);
                                }
                            }
                            name if MODEL_FIELDS.contains(&name) => {}
                            name => {
                                let value = match field.text() {
                                    Some(text) => text.into_owned(),
                                    // Nested elements (the browser SDK's nested objects): kept
                                    // as their XML.
                                    None => field.content.to_string(),
                                };
                                fields.custom.insert(name.to_string(), Value::String(value));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        fields
    }
}

impl HistoryFields {
    /// The history message these fields make: stored under the stanza's id when that is a
    /// 24-hex id (else a new one), with the client's `date_sent` if it is near `now`.
    pub fn into_message(
        self,
        stanza_id: Option<&str>,
        dialog: DialogId,
        app: crate::model::AppId,
        sender: UserId,
        recipient: Option<UserId>,
        now: i64,
    ) -> Message {
        Message {
            id: stanza_id
                .and_then(ObjectId::parse)
                .unwrap_or_else(|| ObjectId::generate(now)),
            app,
            dialog,
            sender,
            recipient,
            body: self.body,
            date_sent: live_date_sent(self.date_sent, now),
            attachments: self.attachments,
            custom: self.custom,
            markable: self.markable,
            stanza: None,
            created_at: now,
            updated_at: now,
        }
    }
}

fn attr(element: &str, name: &str) -> Option<String> {
    let end = element.find('>')?;
    let tag = Element::parse(&format!("{}/>", element[..end].trim_end_matches('/')), None).ok()?;
    tag.attr(name).map(str::to_string)
}

/// The stanza with `dialog_id`, `message_id` and `date_sent` set in its `extraParams`
/// (created if missing); any values the client put there for these three are replaced.
pub fn inject(stanza: &str, dialog: &DialogId, message: &MessageId, date_sent: i64) -> String {
    let added = format!(
        "<dialog_id>{dialog}</dialog_id><message_id>{message}</message_id><date_sent>{date_sent}</date_sent>"
    );
    let base = stanza.as_ptr() as usize;
    let offset = |part: &str| part.as_ptr() as usize - base;
    let extra = children(stanza, ns::CLIENT).find(|c| c.name == "extraParams");
    let Some(extra) = extra else {
        // No extraParams: add one before the stanza's end tag.
        let Some(close) = stanza.rfind("</") else {
            // A self-closing stanza has no children to keep.
            let open = stanza.trim_end_matches("/>");
            let name_end = stanza[1..]
                .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .map_or(stanza.len(), |i| i + 1);
            return format!(
                "{open}><extraParams xmlns='jabber:client'>{added}</extraParams></{}>",
                &stanza[1..name_end]
            );
        };
        return format!(
            "{}<extraParams xmlns='jabber:client'>{added}</extraParams>{}",
            &stanza[..close],
            &stanza[close..]
        );
    };
    let start = offset(extra.element);
    let end = start + extra.element.len();
    let mut out = String::with_capacity(stanza.len() + added.len() + 32);
    out.push_str(&stanza[..start]);
    if extra.content.is_empty() && extra.element.ends_with("/>") {
        let open = extra.element.trim_end_matches("/>");
        out.push_str(open);
        out.push('>');
        out.push_str(&added);
        let name_end = open[1..]
            .find(|c: char| c.is_whitespace())
            .map_or(open.len(), |i| i + 1);
        out.push_str(&format!("</{}>", &open[1..name_end]));
    } else {
        let content_start = offset(extra.content);
        let content_end = content_start + extra.content.len();
        out.push_str(&stanza[start..content_start]);
        let mut copied = content_start;
        for field in children(extra.element, &extra.namespace) {
            if matches!(field.name, "dialog_id" | "message_id" | "date_sent") {
                let field_start = offset(field.element);
                out.push_str(&stanza[copied..field_start]);
                copied = field_start + field.element.len();
            }
        }
        out.push_str(&stanza[copied..content_end]);
        out.push_str(&added);
        out.push_str(&stanza[content_end..end]);
    }
    out.push_str(&stanza[end..]);
    out
}

/// A stored message as an XMPP message (for `send_to_chat=1` and MAM of REST messages):
/// the QuickBlox shape, `extraParams` with the ids and custom fields, attachments as
/// `<attachment/>` attributes.
pub fn render(message: &Message, message_type: &str, from: &str, to: &str) -> String {
    let mut extra = String::from("<save_to_history>1</save_to_history>");
    for attachment in &message.attachments {
        extra.push_str("<attachment");
        for (key, value) in attachment {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            extra.push_str(&format!(" {key}='{}'", escape_attr(&text)));
        }
        extra.push_str("/>");
    }
    for (key, value) in &message.custom {
        let valid = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        if !valid {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        extra.push_str(&format!("<{key}>{}</{key}>", escape_text(&text)));
    }
    extra.push_str(&format!(
        "<dialog_id>{}</dialog_id><message_id>{}</message_id><date_sent>{}</date_sent>",
        message.dialog, message.id, message.date_sent
    ));
    let body = message
        .body
        .as_ref()
        .map(|b| format!("<body>{}</body>", escape_text(b)))
        .unwrap_or_default();
    let markable = if message.markable {
        format!("<markable xmlns='{NS_MARKERS}'/>")
    } else {
        String::new()
    };
    format!(
        "<message xmlns='jabber:client' type='{message_type}' id='{}' from='{}' to='{}'>{body}<extraParams xmlns='jabber:client'>{extra}</extraParams>{markable}</message>",
        message.id,
        escape_attr(from),
        escape_attr(to)
    )
}

/// What [`Session::save_chat`] did with a message.
pub(super) enum Saving {
    /// Queued for the next commit.
    Queued(Box<QueuedSave>),
    /// Nothing new to store (a correction, applied already): route the stanza as it is.
    Nothing(String),
}

/// A 1:1 message queued for the history writer.
pub(super) struct QueuedSave {
    /// As stored, its stanza the one to route.
    message: Message,
    /// The stanza before the ids were injected, to inject again if the id changes.
    stamped: String,
    pending: Pending,
}

impl QueuedSave {
    /// Waits for the commit (cancel-safe).
    pub async fn settled(&mut self) {
        self.pending.settled().await
    }

    /// Whether the commit is done, without waiting.
    pub fn is_settled(&mut self) -> bool {
        self.pending.is_settled()
    }
}

/// The stanza routed (and kept for MAM) for a saved message: the ids injected.
fn render_saved(stamped: &str, message: &Message) -> String {
    inject(stamped, &message.dialog, &message.id, message.date_sent)
}

impl Session {
    /// Queues a 1:1 message that asks for it (the caller checked `asks_for_history`) for the
    /// history writer, with the ids injected into the stanza to route; or applies a correction
    /// (nothing new is stored, the stanza is routed unchanged). A refusal to store (the store
    /// is down) is an error for the sender: the message is not routed half-done.
    pub(super) async fn save_chat(
        &self,
        stanza: &Stanza,
        stamped: String,
        recipient: UserId,
    ) -> Result<Saving, ChatError> {
        let fields = HistoryFields::read(stanza.as_str());
        let chat = &self.ctx.chat;
        let now = clock::unix_now();
        if let Some(original) = fields.replaces.as_deref() {
            let body = fields.body.as_deref();
            chat.correct(self.app, self.user, original, body, None, now)
                .await?;
            return Ok(Saving::Nothing(stamped));
        }
        let dialog = self
            .private_dialog_of(fields.dialog_id.as_ref(), recipient, now)
            .await?;
        let id = stanza.envelope().id.as_deref();
        let mut message =
            fields.into_message(id, dialog, self.app, self.user, Some(recipient), now);
        message.stanza = Some(render_saved(&stamped, &message));
        let pending = chat.queue_save(message.clone()).await?;
        Ok(Saving::Queued(Box::new(QueuedSave {
            message,
            stamped,
            pending,
        })))
    }

    /// Waits for a queued save's commit; returns the stanza to route and the stored message.
    pub(super) async fn settle_chat(
        &self,
        queued: QueuedSave,
    ) -> Result<(String, Message), ChatError> {
        let QueuedSave {
            message,
            stamped,
            pending,
        } = queued;
        let mut saved = self
            .ctx
            .chat
            .settle_save(pending, message, |m| Some(render_saved(&stamped, m)))
            .await?;
        let routed = saved.stanza.take().unwrap_or(stamped);
        Ok((routed, saved))
    }

    /// The private dialog a 1:1 message belongs to: the one it names when that is the pair's,
    /// else the pair's own (created now if they never had one).
    async fn private_dialog_of(
        &self,
        named: Option<&DialogId>,
        recipient: UserId,
        now: i64,
    ) -> Result<DialogId, ChatError> {
        let chat = &self.ctx.chat;
        if let Some(id) = named {
            if chat.cached_private(self.app, self.user, recipient).as_ref() == Some(id) {
                return Ok(id.clone());
            }
            // Another dialog both are in (a group's id in a 1:1 message) keeps the message.
            if let Some(dialog) = chat.store.dialog(self.app, id).await? {
                if dialog.is_occupant(self.user) && dialog.is_occupant(recipient) {
                    return Ok(dialog.id);
                }
            }
        }
        chat.private_dialog_id(self.app, self.user, recipient, now)
            .await
    }

    /// A `received`/`displayed` marker from this user: the marked message (of a dialog they
    /// may read) becomes delivered/read for them. Best effort: a marker for an unknown
    /// message changes nothing and is still routed.
    pub(super) async fn record_marker(&self, stanza: &Stanza, traits: &MessageTraits) {
        let mark = match traits.marker {
            Some(Marker::Received) => Mark::Delivered,
            Some(Marker::Displayed | Marker::Acknowledged) => Mark::Read,
            _ => return,
        };
        let fields = HistoryFields::read(stanza.as_str());
        let Some(id) = fields.marker_id.as_deref().and_then(ObjectId::parse) else {
            return;
        };
        let chat = &self.ctx.chat;
        let result = async {
            let Some(message) = chat.store.message(self.app, &id).await? else {
                return Ok(());
            };
            if message.sender == self.user {
                return Ok(());
            }
            let dialog = chat.existing_dialog(self.app, &message.dialog).await?;
            if dialog.may_read(self.user) {
                chat.mark(&dialog, self.user, mark, Some(vec![id.clone()]))
                    .await?;
            }
            Ok::<(), ChatError>(())
        }
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, "a chat marker was not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (DialogId, MessageId) {
        (
            ObjectId::parse("5f0c00000000000000000001").unwrap(),
            ObjectId::parse("6b025096a701016781000000").unwrap(),
        )
    }

    #[test]
    fn injection_replaces_only_the_three_fields() {
        let (dialog, message) = ids();
        let sent = "<message to='b' id='6b025096a701016781000000' type='chat'><body>hi &amp; bye</body><extraParams xmlns='jabber:client'><save_to_history>1</save_to_history><date_sent>99</date_sent><attachment id='UID9' type='image'/><custom_key>v</custom_key></extraParams><markable xmlns='urn:xmpp:chat-markers:0'/></message>";
        let out = inject(sent, &dialog, &message, 1234);
        assert_eq!(
            out,
            "<message to='b' id='6b025096a701016781000000' type='chat'><body>hi &amp; bye</body><extraParams xmlns='jabber:client'><save_to_history>1</save_to_history><attachment id='UID9' type='image'/><custom_key>v</custom_key><dialog_id>5f0c00000000000000000001</dialog_id><message_id>6b025096a701016781000000</message_id><date_sent>1234</date_sent></extraParams><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        );
        // No extraParams (a standard client): one is added before the end tag.
        let plain = inject(
            "<message type='chat'><body>x</body></message>",
            &dialog,
            &message,
            5,
        );
        assert!(plain.starts_with(
            "<message type='chat'><body>x</body><extraParams xmlns='jabber:client'><dialog_id>"
        ));
        assert!(plain.ends_with("<date_sent>5</date_sent></extraParams></message>"));
        // A self-closing extraParams.
        let empty = inject(
            "<message><extraParams xmlns='jabber:client'/></message>",
            &dialog,
            &message,
            5,
        );
        assert!(
            empty.contains("<extraParams xmlns='jabber:client'><dialog_id>"),
            "{empty}"
        );
        assert!(empty.ends_with("</extraParams></message>"), "{empty}");
        // The result still parses, and reads back.
        let fields = HistoryFields::read(&out);
        assert_eq!(fields.dialog_id, Some(dialog));
        assert_eq!(fields.date_sent, Some(1234));
        assert_eq!(fields.body.as_deref(), Some("hi & bye"));
    }

    #[test]
    fn fields_of_a_quickblox_message() {
        let fields = HistoryFields::read(
            "<message type='chat' id='x'><body>hi</body><markable xmlns='urn:xmpp:chat-markers:0'/>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history>\
             <dialog_id>5F0C00000000000000000001</dialog_id><date_sent>1409146118.7</date_sent>\
             <attachment id='UID9' type='image' name='a.png' size='5'/><custom_key>v</custom_key>\
             <nested><a>1</a></nested></extraParams>\
             <replace xmlns='urn:xmpp:message-correct:0' id='6b025096a701016781000000'/></message>",
        );
        assert_eq!(fields.body.as_deref(), Some("hi"));
        assert!(fields.markable);
        assert_eq!(
            fields.dialog_id.unwrap().as_str(),
            "5f0c00000000000000000001"
        );
        assert_eq!(fields.date_sent, Some(1_409_146_118));
        assert_eq!(fields.attachments.len(), 1);
        assert_eq!(fields.attachments[0]["name"], "a.png");
        assert_eq!(fields.custom["custom_key"], "v");
        assert_eq!(fields.custom["nested"], "<a>1</a>");
        assert_eq!(fields.replaces.as_deref(), Some("6b025096a701016781000000"));
        let marker = HistoryFields::read(
            "<message type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='abc'/></message>",
        );
        assert_eq!(marker.marker_id.as_deref(), Some("abc"));
    }

    #[test]
    fn rendered_messages_read_back() {
        let (dialog, id) = ids();
        let mut custom = Map::new();
        custom.insert("age".into(), Value::String("25".into()));
        custom.insert("bad key".into(), Value::String("dropped".into()));
        let mut attachment = Map::new();
        attachment.insert("type".into(), Value::String("image".into()));
        let message = Message {
            id,
            app: crate::model::AppId(1),
            dialog: dialog.clone(),
            sender: UserId(7),
            recipient: Some(UserId(8)),
            body: Some("a < b".into()),
            date_sent: 77,
            attachments: vec![attachment],
            custom,
            markable: true,
            stanza: None,
            created_at: 77,
            updated_at: 77,
        };
        let xml = render(&message, "chat", "7-1@d", "8-1@d");
        let fields = HistoryFields::read(&xml);
        assert_eq!(fields.body.as_deref(), Some("a < b"));
        assert_eq!(fields.dialog_id, Some(dialog));
        assert!(fields.markable);
        assert_eq!(fields.custom.len(), 1);
        assert_eq!(fields.attachments[0]["type"], "image");
    }
}
