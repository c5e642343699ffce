//! One pass over a message that yields what routing, carbons, offline storage and (later)
//! history need to know about it.
//!
//! Every trait is read from the elements: a child's name and namespace, an `extraParams`
//! field's text ([`children`] walks them without building a tree). Nothing is decided by
//! searching the raw text, which would let a body like
//! `<![CDATA[<private xmlns='urn:xmpp:carbons:2'/>]]>` switch carbons off.

use xmpp_proto::csi::Urgency;
use xmpp_proto::delivery::MessageType;
use xmpp_proto::xml::children;
use xmpp_proto::xml::ns;
use xmpp_proto::Stanza;

/// XEP-0280 message carbons.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0334 message processing hints.
const NS_HINTS: &str = "urn:xmpp:hints";
/// XEP-0203 delayed delivery.
pub const NS_DELAY: &str = "urn:xmpp:delay";
/// XEP-0333 chat markers.
const NS_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// QuickBlox's module name for call signalling (`extraParams/moduleIdentifier`).
const CALL_MODULE: &str = "WebRTCVideoChat";

/// A XEP-0333 chat marker carried by a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The message may be marked (`<markable/>`).
    Markable,
    /// The recipient's device got the message.
    Received,
    /// The recipient saw the message.
    Displayed,
    /// The recipient acknowledged the message.
    Acknowledged,
}

/// What a message is, for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTraits {
    pub message_type: MessageType,
    /// Carries content (a body, QuickBlox `extraParams`) or is a headline: written at once,
    /// even to an inactive client (XEP-0352); chat states and markers may wait.
    pub has_content: bool,
    /// XEP-0280 `<private/>` or XEP-0334 `<no-copy/>`: the sender wants no carbons.
    pub no_copy: bool,
    /// A carbon wrapper itself (`<sent/>` or `<received/>` of XEP-0280).
    pub carbon: bool,
    /// A QuickBlox call signal: a headline whose `extraParams/moduleIdentifier` is
    /// `WebRTCVideoChat` (the SDK sends every signal as a headline).
    pub call_signal: bool,
    /// QuickBlox `extraParams/save_to_history` = 1: the message belongs in the dialog's history.
    pub save_to_history: bool,
    /// The chat marker it carries, if any.
    pub marker: Option<Marker>,
    /// It carries a XEP-0203 `<delay/>` (stored offline before, or sent late on purpose).
    pub delayed: bool,
}

impl MessageTraits {
    /// Reads the traits of a message stanza.
    pub fn of(stanza: &Stanza) -> MessageTraits {
        let message_type = MessageType::parse(stanza.envelope().stanza_type.as_deref())
            .unwrap_or(MessageType::Normal);
        let mut traits = MessageTraits {
            message_type,
            has_content: message_type == MessageType::Headline,
            no_copy: false,
            carbon: false,
            call_signal: false,
            save_to_history: false,
            marker: None,
            delayed: false,
        };
        // One walk over the top-level children and, for QuickBlox's `extraParams`, over its
        // fields: no tree is built (this runs for every message).
        for child in children(stanza.as_str(), ns::CLIENT) {
            match (child.namespace.as_ref(), child.name) {
                (ns::CLIENT, "body") => traits.has_content = true,
                (_, "extraParams") => {
                    traits.has_content = true;
                    for field in children(child.element, &child.namespace) {
                        let is = |want: &str| field.text().is_some_and(|text| text.trim() == want);
                        match field.name {
                            "moduleIdentifier" => {
                                traits.call_signal |=
                                    message_type == MessageType::Headline && is(CALL_MODULE)
                            }
                            // Seed 002: "It doesn't matter what is the value of
                            // save_to_history parameter. Chat server just checks a presence".
                            "save_to_history" => traits.save_to_history = true,
                            _ => {}
                        }
                    }
                }
                (NS_CARBONS, "private") | (NS_HINTS, "no-copy") => traits.no_copy = true,
                (NS_CARBONS, "sent" | "received") => traits.carbon = true,
                (NS_DELAY, "delay") => traits.delayed = true,
                (NS_MARKERS, name) => {
                    traits.marker = match name {
                        "markable" => Some(Marker::Markable),
                        "received" => Some(Marker::Received),
                        "displayed" => Some(Marker::Displayed),
                        "acknowledged" => Some(Marker::Acknowledged),
                        _ => traits.marker,
                    }
                }
                _ => {}
            }
        }
        traits
    }

    /// Whether it is stored in dialog history: it asks (`save_to_history`) and is a message,
    /// not a received/displayed marker riding along.
    pub fn asks_for_history(&self) -> bool {
        self.save_to_history && self.marker.is_none_or(|m| m == Marker::Markable)
    }

    /// How soon an inactive client must get it.
    pub fn urgency(&self) -> Urgency {
        if self.has_content {
            Urgency::Urgent
        } else {
            Urgency::Defer
        }
    }

    /// Whether XEP-0280 copies go to the user's other resources: chat messages that did not
    /// opt out and are not carbons themselves.
    pub fn carbon_eligible(&self) -> bool {
        self.message_type == MessageType::Chat && !self.no_copy && !self.carbon
    }

    /// Whether it waits in offline storage (XEP-0160) when nobody can take it: chat, normal
    /// and headline messages, except QuickBlox call signals (late ones are useless and the SDK
    /// ignores signals carrying `<delay>`) and carbon copies (the user's other device had the
    /// original).
    pub fn worth_storing(&self) -> bool {
        matches!(
            self.message_type,
            MessageType::Chat | MessageType::Normal | MessageType::Headline
        ) && !self.call_signal
            && !self.carbon
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::reply::parse_stanza;

    fn traits(text: &str) -> MessageTraits {
        MessageTraits::of(&parse_stanza(text).expect("a stanza"))
    }

    #[test]
    fn what_waits_offline_is_decided_by_markup_not_text() {
        let body = |kind: &str, text: &str| {
            traits(&format!(
                "<message type='{kind}'><body>{text}</body></message>"
            ))
        };
        assert!(body("chat", "type='error' WebRTCVideoChat").worth_storing());
        assert!(traits("<message/>").worth_storing());
        assert!(body("headline", "news").worth_storing());
        let signal = traits(
            "<message type='headline'><extraParams xmlns='jabber:client'>\
             <moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>",
        );
        assert!(signal.call_signal && !signal.worth_storing());
        assert!(!body("error", "x").worth_storing());
        assert!(!body("groupchat", "x").worth_storing());
        let carbon = traits(&format!(
            "<message type='chat'><sent xmlns='{NS_CARBONS}'><forwarded xmlns='urn:xmpp:forward:0'/></sent></message>"
        ));
        assert!(carbon.carbon && !carbon.worth_storing() && !carbon.carbon_eligible());
    }

    #[test]
    fn cdata_in_a_body_is_text_not_markup() {
        // Before: the raw text was searched, so this turned carbons off and skipped storage.
        let sneaky = traits(&format!(
            "<message type='chat'><body><![CDATA[<private xmlns='{NS_CARBONS}'/><no-copy xmlns='{NS_HINTS}'/><sent xmlns='{NS_CARBONS}'>]]></body></message>"
        ));
        assert!(!sneaky.no_copy && !sneaky.carbon);
        assert!(sneaky.carbon_eligible() && sneaky.worth_storing());
        let signal_in_text = traits(
            "<message type='headline'><body><![CDATA[<moduleIdentifier>WebRTCVideoChat</moduleIdentifier>]]></body></message>",
        );
        assert!(!signal_in_text.call_signal && signal_in_text.worth_storing());
    }

    #[test]
    fn opting_out_of_carbons() {
        for hint in [
            format!("<private xmlns='{NS_CARBONS}'/>"),
            format!("<no-copy xmlns='{NS_HINTS}'/>"),
            format!("<h:no-copy xmlns:h='{NS_HINTS}'/>"),
        ] {
            let t = traits(&format!(
                "<message type='chat'><body>x</body>{hint}</message>"
            ));
            assert!(t.no_copy && !t.carbon_eligible(), "{hint}");
        }
        let store_hint = traits(&format!(
            "<message type='chat'><body>x</body><store xmlns='{NS_HINTS}'/></message>"
        ));
        assert!(store_hint.carbon_eligible());
        // Same name, other namespace: not the hint.
        let other = traits("<message type='chat'><private xmlns='urn:example'/></message>");
        assert!(other.carbon_eligible());
    }

    #[test]
    fn urgency_history_and_markers() {
        let state = traits(
            "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert_eq!(state.urgency(), Urgency::Defer);
        let marker = traits(&format!(
            "<message type='chat'><displayed xmlns='{NS_MARKERS}' id='m1'/></message>"
        ));
        assert_eq!(marker.marker, Some(Marker::Displayed));
        assert_eq!(marker.urgency(), Urgency::Defer);
        let qb = traits(&format!(
            "<message type='chat'><body>hi</body><markable xmlns='{NS_MARKERS}'/>\
             <extraParams xmlns='jabber:client'><save_to_history>1</save_to_history>\
             <dialog_id>5f0c</dialog_id></extraParams></message>"
        ));
        assert!(qb.save_to_history && qb.has_content);
        assert_eq!(qb.marker, Some(Marker::Markable));
        assert_eq!(qb.urgency(), Urgency::Urgent);
        assert_eq!(
            traits("<message type='headline'/>").urgency(),
            Urgency::Urgent
        );
        assert!(!traits("<message type='chat'><body>x</body></message>").save_to_history);
    }

    #[test]
    fn only_headlines_are_call_signals() {
        // An application's own chat message may carry the same field: it is kept offline.
        let chat = traits(
            "<message type='chat'><body>x</body><extraParams xmlns='jabber:client'>\
             <moduleIdentifier>WebRTCVideoChat</moduleIdentifier></extraParams></message>",
        );
        assert!(!chat.call_signal && chat.worth_storing());
    }
}
