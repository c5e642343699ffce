//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3), each knowing its wire form.
//!
//! Stanza errors also carry the legacy numeric `code` attribute: the QuickBlox SDK surfaces it
//! to applications (`onMessageErrorListener`, join errors), so every error we send has one.

use crate::xml::escape_text;

/// Namespace of stream error conditions.
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Namespace of stanza error conditions.
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A stream-level error condition; sending one ends the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamErrorCondition {
    /// The XML is well-formed but not acceptable XMPP.
    BadFormat,
    /// A new session with the same resource replaced this one.
    Conflict,
    /// The peer was silent for too long.
    ConnectionTimeout,
    /// The `to` of the stream header names a domain we do not serve.
    HostUnknown,
    /// A namespace other than the ones XMPP requires.
    InvalidNamespace,
    /// Stanzas were sent before authentication.
    NotAuthorized,
    /// The XML is not well-formed.
    NotWellFormed,
    /// A local policy (a rate or size limit) was violated.
    PolicyViolation,
    /// The server lacks resources (for instance a connection limit).
    ResourceConstraint,
    /// Comments, processing instructions, DTDs or entity references were sent.
    RestrictedXml,
    /// The server is shutting down.
    SystemShutdown,
    /// Any other error.
    UndefinedCondition,
    /// A top-level element that is not a stanza or a negotiation element.
    UnsupportedStanzaType,
    /// The stream header's `version` is not 1.x.
    UnsupportedVersion,
    /// The input is not UTF-8, or the XML declaration names another encoding (RFC 6120
    /// §4.9.3.22).
    UnsupportedEncoding,
}

impl StreamErrorCondition {
    /// The condition's element name.
    pub fn name(self) -> &'static str {
        match self {
            StreamErrorCondition::BadFormat => "bad-format",
            StreamErrorCondition::Conflict => "conflict",
            StreamErrorCondition::ConnectionTimeout => "connection-timeout",
            StreamErrorCondition::HostUnknown => "host-unknown",
            StreamErrorCondition::InvalidNamespace => "invalid-namespace",
            StreamErrorCondition::NotAuthorized => "not-authorized",
            StreamErrorCondition::NotWellFormed => "not-well-formed",
            StreamErrorCondition::PolicyViolation => "policy-violation",
            StreamErrorCondition::ResourceConstraint => "resource-constraint",
            StreamErrorCondition::RestrictedXml => "restricted-xml",
            StreamErrorCondition::SystemShutdown => "system-shutdown",
            StreamErrorCondition::UndefinedCondition => "undefined-condition",
            StreamErrorCondition::UnsupportedStanzaType => "unsupported-stanza-type",
            StreamErrorCondition::UnsupportedVersion => "unsupported-version",
            StreamErrorCondition::UnsupportedEncoding => "unsupported-encoding",
        }
    }

    /// `<stream:error>` with this condition and an optional human-readable text.
    pub fn to_xml(self, text: Option<&str>) -> String {
        let mut xml = format!("<stream:error><{} xmlns='{NS_STREAMS}'/>", self.name());
        if let Some(text) = text {
            xml.push_str(&format!(
                "<text xmlns='{NS_STREAMS}'>{}</text>",
                escape_text(text)
            ));
        }
        xml.push_str("</stream:error>");
        xml
    }
}

/// The `type` of a stanza error: what the sender should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Do not retry.
    Cancel,
    /// Retry after changing the data.
    Modify,
    /// Retry after providing credentials.
    Auth,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Auth => "auth",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza-level error condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StanzaErrorCondition {
    /// The request is malformed.
    BadRequest,
    /// A resource or item already exists.
    Conflict,
    /// The feature is not implemented.
    FeatureNotImplemented,
    /// The sender may not do this.
    Forbidden,
    /// An internal error.
    InternalServerError,
    /// The addressed item does not exist.
    ItemNotFound,
    /// The address is malformed.
    JidMalformed,
    /// The request violates a rule (for instance a size limit).
    NotAcceptable,
    /// The action is not allowed for anyone.
    NotAllowed,
    /// The sender must authenticate first.
    NotAuthorized,
    /// A policy (such as a rate limit) was violated.
    PolicyViolation,
    /// The recipient is temporarily unavailable.
    RecipientUnavailable,
    /// Membership is needed first (XEP-0045: joining a members-only room as a non-member).
    RegistrationRequired,
    /// The server is out of a resource; try later.
    ResourceConstraint,
    /// The service is unavailable (also: the recipient blocks the sender).
    ServiceUnavailable,
    /// Any other error.
    UndefinedCondition,
    /// The request was not expected now.
    UnexpectedRequest,
}

impl StanzaErrorCondition {
    /// The condition's element name.
    pub fn name(self) -> &'static str {
        match self {
            StanzaErrorCondition::BadRequest => "bad-request",
            StanzaErrorCondition::Conflict => "conflict",
            StanzaErrorCondition::FeatureNotImplemented => "feature-not-implemented",
            StanzaErrorCondition::Forbidden => "forbidden",
            StanzaErrorCondition::InternalServerError => "internal-server-error",
            StanzaErrorCondition::ItemNotFound => "item-not-found",
            StanzaErrorCondition::JidMalformed => "jid-malformed",
            StanzaErrorCondition::NotAcceptable => "not-acceptable",
            StanzaErrorCondition::NotAllowed => "not-allowed",
            StanzaErrorCondition::NotAuthorized => "not-authorized",
            StanzaErrorCondition::PolicyViolation => "policy-violation",
            StanzaErrorCondition::RecipientUnavailable => "recipient-unavailable",
            StanzaErrorCondition::RegistrationRequired => "registration-required",
            StanzaErrorCondition::ResourceConstraint => "resource-constraint",
            StanzaErrorCondition::ServiceUnavailable => "service-unavailable",
            StanzaErrorCondition::UndefinedCondition => "undefined-condition",
            StanzaErrorCondition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 recommends for the condition.
    pub fn default_type(self) -> ErrorType {
        match self {
            StanzaErrorCondition::BadRequest
            | StanzaErrorCondition::JidMalformed
            | StanzaErrorCondition::NotAcceptable
            | StanzaErrorCondition::PolicyViolation => ErrorType::Modify,
            StanzaErrorCondition::Forbidden
            | StanzaErrorCondition::NotAuthorized
            | StanzaErrorCondition::RegistrationRequired => ErrorType::Auth,
            StanzaErrorCondition::InternalServerError
            | StanzaErrorCondition::RecipientUnavailable
            | StanzaErrorCondition::ResourceConstraint
            | StanzaErrorCondition::UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }

    /// The legacy (XEP-0086) numeric code.
    pub fn legacy_code(self) -> u16 {
        match self {
            StanzaErrorCondition::BadRequest
            | StanzaErrorCondition::JidMalformed
            | StanzaErrorCondition::UnexpectedRequest => 400,
            StanzaErrorCondition::NotAuthorized => 401,
            StanzaErrorCondition::Forbidden => 403,
            StanzaErrorCondition::ItemNotFound | StanzaErrorCondition::RecipientUnavailable => 404,
            StanzaErrorCondition::NotAllowed => 405,
            StanzaErrorCondition::NotAcceptable | StanzaErrorCondition::PolicyViolation => 406,
            StanzaErrorCondition::RegistrationRequired => 407,
            StanzaErrorCondition::Conflict => 409,
            StanzaErrorCondition::FeatureNotImplemented => 501,
            StanzaErrorCondition::ServiceUnavailable => 503,
            StanzaErrorCondition::InternalServerError
            | StanzaErrorCondition::ResourceConstraint
            | StanzaErrorCondition::UndefinedCondition => 500,
        }
    }
}

/// A stanza error ready to be put into a `type='error'` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// The condition.
    pub condition: StanzaErrorCondition,
    /// The type; defaults to the condition's recommended type.
    pub error_type: ErrorType,
    /// Optional human-readable text.
    pub text: Option<String>,
    /// Optional application-specific condition element (e.g. XEP-0191's `<blocked/>`).
    pub app_specific: Option<&'static str>,
}

impl StanzaError {
    /// An error with the condition's default type and no text.
    pub fn new(condition: StanzaErrorCondition) -> StanzaError {
        StanzaError {
            condition,
            error_type: condition.default_type(),
            text: None,
            app_specific: None,
        }
    }

    /// Adds an application-specific condition element, written after the text.
    pub fn with_app_specific(mut self, element: &'static str) -> StanzaError {
        self.app_specific = Some(element);
        self
    }

    /// Adds a human-readable text.
    pub fn with_text(mut self, text: impl Into<String>) -> StanzaError {
        self.text = Some(text.into());
        self
    }

    /// The `<error>` element.
    pub fn to_xml(&self) -> String {
        let mut xml = format!(
            "<error type='{}' code='{}'><{} xmlns='{NS_STANZAS}'/>",
            self.error_type.as_str(),
            self.condition.legacy_code(),
            self.condition.name()
        );
        if let Some(text) = &self.text {
            xml.push_str(&format!(
                "<text xmlns='{NS_STANZAS}'>{}</text>",
                escape_text(text)
            ));
        }
        if let Some(element) = self.app_specific {
            xml.push_str(element);
        }
        xml.push_str("</error>");
        xml
    }
}

impl From<StanzaErrorCondition> for StanzaError {
    fn from(condition: StanzaErrorCondition) -> Self {
        StanzaError::new(condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_xml() {
        assert_eq!(
            StreamErrorCondition::PolicyViolation.to_xml(Some("too fast & <loud>")),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>too fast &amp; &lt;loud&gt;</text></stream:error>"
        );
    }

    #[test]
    fn stanza_error_xml_has_type_and_code() {
        let error = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        assert_eq!(
            error.to_xml(),
            "<error type='cancel' code='503'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        );
        let error = StanzaError::new(StanzaErrorCondition::Forbidden).with_text("no");
        assert!(error
            .to_xml()
            .starts_with("<error type='auth' code='403'><forbidden "));
        assert!(error.to_xml().contains(">no</text>"));
    }
}
