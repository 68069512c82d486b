//! Stanza vocabulary: kinds, stream errors (RFC 6120 §4.9) and stanza errors (§8.3), and
//! the replies built from them.

use crate::xml::{ns, Element, ElementExt};

/// Stream error conditions (RFC 6120 §4.9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamErrorCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    pub fn name(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }
}

/// A stream error about to be sent, then the stream closed.
#[derive(Clone, Debug)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// The `<stream:error>` element.
    pub fn to_element(&self) -> Element {
        let mut error = Element::bare("error", ns::STREAM);
        error.append_child(Element::bare(self.condition.name(), ns::STREAMS_ERR));
        if let Some(text) = &self.text {
            error.append_child(
                Element::bare("text", ns::STREAMS_ERR)
                    .with_text(text.clone())
                    .tap_lang("en"),
            );
        }
        error
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(text) => write!(f, "{} ({text})", self.condition.name()),
            None => f.write_str(self.condition.name()),
        }
    }
}

trait TapLang {
    fn tap_lang(self, lang: &str) -> Self;
}

impl TapLang for Element {
    fn tap_lang(mut self, lang: &str) -> Self {
        self.set_lang(lang);
        self
    }
}

/// Stanza error type (RFC 6120 §8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// Stanza error conditions (RFC 6120 §8.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    pub fn name(self) -> &'static str {
        use Condition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The type RFC 6120 §8.3.3 pairs with each condition.
    pub fn default_type(self) -> ErrorType {
        use Condition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            _ => ErrorType::Cancel,
        }
    }

    pub fn from_name(name: &str) -> Option<Condition> {
        use Condition::*;
        const ALL: [Condition; 22] = [
            BadRequest,
            Conflict,
            FeatureNotImplemented,
            Forbidden,
            Gone,
            InternalServerError,
            ItemNotFound,
            JidMalformed,
            NotAcceptable,
            NotAllowed,
            NotAuthorized,
            PolicyViolation,
            RecipientUnavailable,
            Redirect,
            RegistrationRequired,
            RemoteServerNotFound,
            RemoteServerTimeout,
            ResourceConstraint,
            ServiceUnavailable,
            SubscriptionRequired,
            UndefinedCondition,
            UnexpectedRequest,
        ];
        ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A stanza error: what a handler returns to fail a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub error_type: ErrorType,
    pub condition: Condition,
    pub text: Option<String>,
    /// An application-specific condition element, e.g. XEP-0198's or a module's own.
    pub app_condition: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            error_type: condition.default_type(),
            condition,
            text: None,
            app_condition: None,
        }
    }

    pub fn typed(condition: Condition, error_type: ErrorType) -> Self {
        StanzaError {
            error_type,
            ..StanzaError::new(condition)
        }
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn bad_request(text: impl Into<String>) -> Self {
        StanzaError::new(Condition::BadRequest).text(text)
    }

    pub fn to_element(&self) -> Element {
        let mut error = Element::bare("error", ns::CLIENT).with("type", self.error_type.name());
        error.append_child(Element::bare(self.condition.name(), ns::STANZAS_ERR));
        if let Some(text) = &self.text {
            let mut t = Element::bare("text", ns::STANZAS_ERR).with_text(text.clone());
            t.set_lang("en");
            error.append_child(t);
        }
        if let Some(app) = &self.app_condition {
            error.append_child((**app).clone());
        }
        error
    }

    /// Reads the error out of an `<error/>` child of a stanza, if it has one.
    pub fn from_stanza(stanza: &Element) -> Option<StanzaError> {
        let error = stanza.get_child("error", ns::CLIENT)?;
        let condition = error
            .children()
            .filter(|c| c.ns() == ns::STANZAS_ERR && c.name() != "text")
            .find_map(|c| Condition::from_name(c.name()))
            .unwrap_or(Condition::UndefinedCondition);
        let error_type = match error.attr("type") {
            Some("auth") => ErrorType::Auth,
            Some("continue") => ErrorType::Continue,
            Some("modify") => ErrorType::Modify,
            Some("wait") => ErrorType::Wait,
            _ => ErrorType::Cancel,
        };
        let text = error.get_child("text", ns::STANZAS_ERR).map(|t| t.text());
        Some(StanzaError {
            error_type,
            condition,
            text,
            app_condition: None,
        })
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.error_type.name(), self.condition.name())?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StanzaError {}

/// The three stanza kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    pub fn of(stanza: &Element) -> Option<StanzaKind> {
        if !stanza.has_ns(ns::CLIENT) {
            return None;
        }
        match stanza.name() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// Builds the error reply to `stanza`: swapped addresses, `type='error'`, original
/// payload kept (RFC 6120 §8.3.1 allows it; clients use it to match requests).
pub fn error_reply(stanza: &Element, error: &StanzaError) -> Element {
    let mut reply = Element::bare(stanza.name(), ns::CLIENT);
    copy_swapped_addresses(stanza, &mut reply);
    reply.set("type", "error");
    for child in stanza.children() {
        if !(child.name() == "error" && child.ns() == ns::CLIENT) {
            reply.append_child(child.clone());
        }
    }
    reply.append_child(error.to_element());
    reply
}

/// An IQ result for `request`, optionally carrying a payload.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    crate::xml::iq_answer::IqAnswer::of(request, payload).into_element()
}

fn copy_swapped_addresses(from: &Element, to: &mut Element) {
    if let Some(id) = from.attr("id") {
        to.set("id", id);
    }
    if let Some(sender) = from.attr("from") {
        to.set("to", sender);
    }
    if let Some(recipient) = from.attr("to") {
        to.set("from", recipient);
    }
}

/// Whether an error reply may be sent for this stanza: never for errors (loops), and
/// never for IQ results.
pub fn may_bounce(stanza: &Element) -> bool {
    match stanza.attr("type") {
        Some("error") => false,
        Some("result") => stanza.name() != "iq",
        _ => true,
    }
}
