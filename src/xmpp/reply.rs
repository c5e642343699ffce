//! Answers to the session's own client: iq results, stanza errors and bounces (RFC 6120 §8.3),
//! and [`Failure`], the one way a handler says it refused a stanza. A failure becomes a stanza
//! error in exactly one place ([`Session::answer`]); storage errors are logged there and never
//! read as "no such user" or `item-not-found`.

use xmpp_proto::csi::Urgency;
use xmpp_proto::errors::{StanzaError, StanzaErrorCondition};
use xmpp_proto::xml::ns;
use xmpp_proto::{escape_attr, Element, Stanza};

use super::session::Session;
use crate::store::StoreError;

/// A stanza for the session's own client and how urgently it must be written.
pub type Reply = (String, Urgency);

/// What a handler returns: the replies for the client, or why the stanza was refused.
pub type Handled = Result<Vec<Reply>, Failure>;

/// Why a handler refused a stanza.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A stanza error the client should see (bad request, not allowed, …).
    #[error("refused with {}", .0.condition.name())]
    Refused(StanzaError),
    /// The store failed: the client gets `internal-server-error`, the log gets the cause.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

impl From<StanzaErrorCondition> for Failure {
    fn from(condition: StanzaErrorCondition) -> Self {
        Failure::Refused(StanzaError::new(condition))
    }
}

impl From<StanzaError> for Failure {
    fn from(error: StanzaError) -> Self {
        Failure::Refused(error)
    }
}

impl Session {
    /// The replies of a handler, or the error bounce its failure stands for.
    pub(super) fn answer(&self, stanza: &Stanza, handled: Handled) -> Vec<Reply> {
        match handled {
            Ok(replies) => replies,
            Err(Failure::Refused(error)) => self.error_reply(stanza, error).into_iter().collect(),
            Err(Failure::Store(error)) => {
                tracing::error!(%error, stanza = %stanza.envelope().name, "storage failed");
                self.bounce(stanza, StanzaErrorCondition::InternalServerError)
            }
        }
    }

    /// `<iq type='result'>` answering `iq`, from `from` (default: the server), with `body`.
    pub(super) fn result(&self, iq: &Element, from: Option<&str>, body: &str) -> Vec<Reply> {
        let id = escape_attr(iq.attr("id").unwrap_or_default()).into_owned();
        let from = from
            .map(|f| format!(" from='{}'", escape_attr(f)))
            .unwrap_or_default();
        let to = escape_attr(&self.me().to_string()).into_owned();
        let text = if body.is_empty() {
            format!("<iq type='result' id='{id}'{from} to='{to}'/>")
        } else {
            format!("<iq type='result' id='{id}'{from} to='{to}'>{body}</iq>")
        };
        vec![(text, Urgency::Urgent)]
    }

    /// [`error_reply`](Self::error_reply) as the reply list handlers return.
    pub(super) fn bounce(&self, stanza: &Stanza, condition: StanzaErrorCondition) -> Vec<Reply> {
        self.error_reply(stanza, condition.into())
            .into_iter()
            .collect()
    }

    /// A `type='error'` bounce of `stanza` back to the client, keeping its id (the SDK matches
    /// errors to messages by id). Errors are never answered with errors.
    pub(super) fn error_reply(&self, stanza: &Stanza, error: StanzaError) -> Option<Reply> {
        if stanza.envelope().is_error() {
            return None;
        }
        let from = stanza.envelope().to.as_deref().unwrap_or_default();
        let text = bounce_text(stanza, from, &self.me().to_string(), &error);
        Some((text, Urgency::Urgent))
    }
}

/// `stanza` returned as `type='error'` from `from` (empty: the server) to `to`, keeping its
/// name and id (the SDK matches errors to messages by id).
pub fn bounce_text(stanza: &Stanza, from: &str, to: &str, error: &StanzaError) -> String {
    let envelope = stanza.envelope();
    let name = &envelope.name;
    let id = envelope
        .id
        .as_deref()
        .map(|id| format!(" id='{}'", escape_attr(id)))
        .unwrap_or_default();
    let from = if from.is_empty() {
        String::new()
    } else {
        format!(" from='{}'", escape_attr(from))
    };
    format!(
        "<{name} type='error'{id}{from} to='{}'>{}</{name}>",
        escape_attr(to),
        error.to_xml()
    )
}

/// The stanza's payload as a tree, for the handlers that claim it (iqs, presence details).
/// The stream parser already checked it, so this fails only on a bug; such a stanza is
/// answered `bad-request` rather than trusted.
pub fn parse(stanza: &Stanza) -> Result<Element, Failure> {
    Element::parse(stanza.as_str(), Some(ns::CLIENT))
        .map_err(|_| Failure::from(StanzaErrorCondition::BadRequest))
}

/// Parses one serialized stanza we built or stored ourselves.
pub fn parse_stanza(text: &str) -> Result<Stanza, xmpp_proto::XmlError> {
    let mut parser = xmpp_proto::StreamParser::new(xmpp_proto::Limits::default());
    parser.feed(
        format!(
            "<stream:stream xmlns='{}' xmlns:stream='{}' to='x' version='1.0'>",
            ns::CLIENT,
            ns::STREAMS
        )
        .as_bytes(),
    );
    parser.feed(text.as_bytes());
    loop {
        match parser.next_event()? {
            Some(xmpp_proto::Event::Stanza(stanza)) => return Ok(stanza),
            Some(_) => continue,
            None => return Err(xmpp_proto::XmlError::NotOneElement("no stanza")),
        }
    }
}

/// The same stanza addressed `to` someone else (stored presences and offline messages).
pub fn retarget(stanza: &str, to: &str) -> String {
    match parse_stanza(stanza) {
        Ok(parsed) => parsed.with_from_to(None, Some(to)),
        Err(_) => stanza.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retarget_keeps_children() {
        let out = retarget(
            "<presence from='a@b/c'><show>away</show></presence>",
            "x@y/z",
        );
        assert_eq!(
            out,
            "<presence to='x@y/z' from='a@b/c'><show>away</show></presence>"
        );
    }
}
