//! Where a message for a local account goes (RFC 6121 §8.5), given the account's bound
//! resources.
//!
//! Driving contract: the shell has already decided the message is for a local account it may
//! reach (domain, application, blocking); it describes the account's bound resources as a
//! slice of [`Resource`] and calls [`route_message`]. It then hands the message to the
//! resources named by [`Route::Resources`], applies its offline-storage rules on
//! [`Route::Offline`], returns the error of [`Route::Bounce`], or does nothing on
//! [`Route::Ignore`]. Hand-overs can still fail (queue full, session gone): that is I/O, not
//! a routing rule, so the shell handles it. The server so far routed a message whose bound
//! full JID could not take it as if the resource were unbound (call again with `full: None`),
//! and stored it offline when no resource took it.
//!
//! The rules keep the server's QuickBlox behaviour; where they leave RFC 6121 the doc of
//! [`route_message`] says so ("QuickBlox:").

use crate::errors::StanzaErrorCondition;

/// The `type` of a `<message/>` (RFC 6121 §5.2.2).
///
/// Complete by definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// A one-off message (also: no `type`, or one we do not know).
    Normal,
    /// One-to-one conversation.
    Chat,
    /// Multi-user chat.
    Groupchat,
    /// An alert that expects no reply (QuickBlox: call signals, system notifications).
    Headline,
    /// An error about a message sent earlier.
    Error,
}

impl MessageType {
    /// The type named by a `type` attribute. No attribute, or a value RFC 6121 does not
    /// define, is `Normal`: §5.2.2 says a receiver that does not understand the type MUST
    /// treat the message as normal, so an unknown type is no `bad-request`.
    ///
    /// Never `None` today: the `Option` matches the other `parse` functions of this crate
    /// and the shell's call sites.
    pub fn parse(type_attr: Option<&str>) -> Option<MessageType> {
        Some(match type_attr {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        })
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "normal",
            MessageType::Chat => "chat",
            MessageType::Groupchat => "groupchat",
            MessageType::Headline => "headline",
            MessageType::Error => "error",
        }
    }
}

/// One bound resource of the recipient as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// The priority of its current presence; `None` before initial presence or after
    /// unavailable (the resource is bound but not available, RFC 6121 §4.2.2).
    pub priority: Option<i8>,
}

/// Where a message goes.
///
/// Complete by definition: a stanza is delivered, kept, refused or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Deliver to these resources (indices into the slice given, ascending, never empty).
    Resources(Vec<usize>),
    /// Nobody can take it now: store offline (XEP-0160) if the shell's storage rules allow,
    /// else drop silently.
    Offline,
    /// Return this error to the sender.
    Bounce(StanzaErrorCondition),
    /// Drop silently.
    Ignore,
}

/// Where a message of type `kind` goes among the recipient's bound `resources`.
///
/// `addressed_full` says whether the `to` was a full JID; `full` is `Some(index)` into
/// `resources` when it was and that resource is bound, `None` for a bare JID or a resource
/// nobody bound. Under these rules an unbound full JID routes exactly like the bare JID;
/// RFC 6121 §8.5.3.2.1 would tell them apart (see below), which is why the caller says which
/// it was. The rules:
///
/// - A full JID whose resource is bound: deliver to it, whatever the type and whether or not
///   it sent presence (RFC 6121 §8.5.3.1). A groupchat message too, as RFC 6121 has it; the
///   recipient's client decides what to make of it.
/// - A full JID nobody bound is routed like the bare JID, whatever the type. RFC 6121
///   §8.5.3.2.1 does so for chat, and its outcomes for groupchat (bounce) and error (drop)
///   are the same. QuickBlox (the server's behaviour so far, kept): normal and headline
///   messages too, where the RFC drops them or bounces them with `service-unavailable`.
/// - A bare JID (RFC 6121 §8.5.2):
///   - `error`: dropped silently (§8.5.2.1.1, §8.5.2.2): answering an error risks loops.
///   - `groupchat`: bounced with `service-unavailable` (§8.5.2.1.1, §8.5.2.2): there is no
///     room at a user's address.
///   - `headline`: QuickBlox: every bound resource, available or not and whatever its
///     priority, since call signals and system notifications must reach every device,
///     including ones that never sent presence (the RFC says the available resources with
///     non-negative priority, and silently ignoring it when there are none). With nothing
///     bound: [`Route::Offline`] (the RFC drops it).
///   - `chat` and `normal`: the available resources with the highest non-negative priority,
///     all of them when several share it (§8.5.2.1.1); a negative priority means "never send
///     me bare-JID messages" (RFC 6121 §4.7.2.3), so with no available resource of
///     non-negative priority: [`Route::Offline`] (§8.5.2.2).
///
/// A `full` index past the end of `resources`, or one given with `addressed_full` false,
/// is a shell bug; the message is then routed as to the bare JID rather than trusted.
pub fn route_message(
    kind: MessageType,
    addressed_full: bool,
    full: Option<usize>,
    resources: &[Resource],
) -> Route {
    if let (true, Some(index)) = (addressed_full, full) {
        if index < resources.len() {
            return Route::Resources(vec![index]);
        }
    }
    match kind {
        MessageType::Error => Route::Ignore,
        MessageType::Groupchat => Route::Bounce(StanzaErrorCondition::ServiceUnavailable),
        MessageType::Headline => non_empty((0..resources.len()).collect()),
        MessageType::Chat | MessageType::Normal => non_empty(highest_priority(resources)),
    }
}

/// The available resources with the highest non-negative priority (RFC 6121 §8.5.2.1.1).
fn highest_priority(resources: &[Resource]) -> Vec<usize> {
    let eligible = || {
        resources
            .iter()
            .enumerate()
            .filter_map(|(index, resource)| Some((index, resource.priority?)))
            .filter(|&(_, priority)| priority >= 0)
    };
    let Some(best) = eligible().map(|(_, priority)| priority).max() else {
        return Vec::new();
    };
    eligible()
        .filter(|&(_, priority)| priority == best)
        .map(|(index, _)| index)
        .collect()
}

fn non_empty(indices: Vec<usize>) -> Route {
    if indices.is_empty() {
        Route::Offline
    } else {
        Route::Resources(indices)
    }
}
