//! What the assistant asks of a model, whatever speaks for it: one trait, [`Model`], with
//! a prompt in and a reply out, text deltas handed to the caller as they arrive.

use std::future::Future;
use std::pin::Pin;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// One call: the system prompt (instruction and passages) and the conversation so far,
/// the question last.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub system: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    /// Ask the endpoint to stream its answer (server-sent events).
    pub stream: bool,
}

impl Prompt {
    /// The prompt as one text, for its hash and size in the audit entry.
    pub fn full_text(&self) -> String {
        let mut out = format!("system: {}\n", self.system);
        for m in &self.messages {
            let who = match m.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            out.push_str(&format!("{who}: {}\n", m.content));
        }
        out
    }
}

/// A model's answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub text: String,
    /// The model as the endpoint named it.
    pub model: String,
    /// The address that answered (scheme, host and port; never a key).
    pub endpoint: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// Why a model gave no answer. Messages are shown to the person asking: they say what went
/// wrong in plain words, never a key, a body or an internal address.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("the model endpoint {0:?} is not configured on this installation")]
    NotConfigured(String),
    #[error("this tenant may not use the model endpoint {0:?}")]
    NotAllowed(String),
    #[error("the model's address {host} may not be reached for this tenant: {reason}")]
    Egress { host: String, reason: String },
    #[error("the model did not answer in time ({0})")]
    Timeout(&'static str),
    #[error("the model could not be reached")]
    Unreachable,
    #[error("the model is rate limited; try again in {0} s")]
    RateLimited(u64),
    #[error("the model answered with an error (HTTP {0})")]
    Status(u16),
    #[error("the model's answer could not be read ({0})")]
    Malformed(&'static str),
    #[error("the model's answer broke off before its end")]
    Cut,
    #[error("the model is failing; calls are paused for {0} s")]
    CircuitOpen(u64),
    #[error("the call was not made: {0}")]
    Unredactable(String),
    #[error("the model endpoint is busy with other calls; try again in {0} s")]
    Busy(u64),
}

impl ModelError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "AI-0001",
            Self::NotAllowed(_) => "AI-0002",
            Self::Egress { .. } => "AI-0003",
            Self::Timeout(_) => "AI-0004",
            Self::Unreachable => "AI-0005",
            Self::RateLimited(_) => "AI-0006",
            Self::Status(_) => "AI-0007",
            Self::Malformed(_) => "AI-0008",
            Self::Cut => "AI-0009",
            Self::CircuitOpen(_) => "AI-0010",
            Self::Unredactable(_) => "AI-0011",
            Self::Busy(_) => "AI-0012",
        }
    }

    /// The error's name in metrics.
    pub fn metric(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "not_configured",
            Self::NotAllowed(_) => "not_allowed",
            Self::Egress { .. } => "egress_refused",
            Self::Timeout(_) => "timeout",
            Self::Unreachable => "unreachable",
            Self::RateLimited(_) => "rate_limited",
            Self::Status(_) => "status",
            Self::Malformed(_) => "malformed",
            Self::Cut => "cut",
            Self::CircuitOpen(_) => "circuit_open",
            Self::Unredactable(_) => "unredactable",
            Self::Busy(_) => "busy",
        }
    }

    /// The kind of failure, for the status a caller gets: the model's own refusals and
    /// rate limits are the caller's to see; everything else is a busy or failing service.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Self::NotConfigured(_)
            | Self::NotAllowed(_)
            | Self::Egress { .. }
            | Self::Unredactable(_) => ErrorKind::Forbidden,
            Self::RateLimited(_) => ErrorKind::Throttled,
            _ => ErrorKind::Busy,
        }
    }

    /// Seconds after which trying again may succeed, where the failure says.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(s) | Self::CircuitOpen(s) | Self::Busy(s) => Some((*s).max(1)),
            _ => None,
        }
    }

    /// Whether trying again (the same endpoint later, or another) may succeed: faults of
    /// the connection or the server, not of the request.
    pub fn transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Unreachable | Self::Cut | Self::RateLimited(_) => true,
            Self::Status(s) => *s >= 500 || *s == 408,
            _ => false,
        }
    }
}

/// Text deltas as they arrive.
pub type Deltas<'a> = &'a mut (dyn FnMut(&str) + Send);

/// A future of a reply, borrowed from the call.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Result<Reply, ModelError>> + Send + 'a>>;

/// Something that answers prompts: an endpoint of a provider, reached over HTTP.
pub trait Model: Send + Sync {
    /// The name tenant policy uses for it.
    fn name(&self) -> &str;

    /// Whether a call may leave this host (any address that is not loopback): values are
    /// then replaced by placeholders before it goes. Unknown means yes.
    fn upstream(&self) -> bool {
        true
    }

    /// Calls in progress and waiting, and the breakers' states, for `/metrics`.
    fn state(&self) -> Option<crate::metrics::EndpointState> {
        None
    }

    /// Answers `prompt`, calling `deltas` with each piece of text as it arrives. The hosts
    /// of `egress_allow` are those the calling tenant lets its data go to.
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
        egress_allow: &'a [String],
        deltas: Deltas<'a>,
    ) -> Pending<'a>;
}
