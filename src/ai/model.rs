//! What the assistant asks of a model, whatever speaks for it: one trait, [`Model`], with
//! a prompt in and a reply out, text deltas handed to the caller as they arrive.

pub use crate::config::Protocol;
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
    /// Parts of a gateway call passed to an endpoint of the caller's own API as they came.
    pub raw: Option<Raw>,
}

/// What a gateway call carries beyond text, in the API it was written for: the caller's
/// messages with their tool calls and results, and top-level fields (tool definitions,
/// fields the tenant lets through). Only an endpoint speaking that API is given them.
#[derive(Debug, Clone)]
pub struct Raw {
    pub protocol: Protocol,
    /// The caller's messages (system messages left out: the prompt's system goes instead),
    /// where they hold tool calls or results.
    pub messages: Option<Vec<serde_json::Value>>,
    /// Top-level fields added to the body as they came; never the ones the gateway sets.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Top-level fields the gateway itself sets on a call to an endpoint: never taken from the
/// caller's raw fields.
pub const GATEWAY_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
];

impl Raw {
    /// Whether the call offers tools or holds tool calls: its answer may be a tool call.
    pub fn has_tools(&self) -> bool {
        self.messages.is_some() || self.fields.contains_key("tools")
    }
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
        if let Some(messages) = self.raw.as_ref().and_then(|r| r.messages.as_ref()) {
            // Tool calls and results are part of what was sent: the entry's hash covers them.
            for m in messages {
                out.push_str(&format!("raw: {m}\n"));
            }
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
    /// Why the model stopped, where it said.
    pub stop: Option<Stop>,
    /// The tools the model called, in the API of the call's [`Raw`] part: OpenAI's
    /// `message.tool_calls`, or Anthropic's content blocks (text and `tool_use`).
    pub tool_calls: Option<serde_json::Value>,
}

/// Why a model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its answer was complete.
    End,
    /// It reached the most tokens it was allowed.
    Length,
    /// It called tools and waits for their results.
    ToolUse,
}

impl Stop {
    /// From OpenAI's `finish_reason` or Anthropic's `stop_reason`.
    pub fn parse(reason: &str) -> Option<Self> {
        match reason {
            "stop" | "end_turn" | "stop_sequence" => Some(Stop::End),
            "length" | "max_tokens" => Some(Stop::Length),
            "tool_calls" | "tool_use" | "function_call" => Some(Stop::ToolUse),
            _ => None,
        }
    }

    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            Stop::End => "stop",
            Stop::Length => "length",
            Stop::ToolUse => "tool_calls",
        }
    }

    /// Anthropic's `stop_reason`.
    pub fn anthropic(self) -> &'static str {
        match self {
            Stop::End => "end_turn",
            Stop::Length => "max_tokens",
            Stop::ToolUse => "tool_use",
        }
    }
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
    #[error("the server stopped before the model answered; ask again once it is back")]
    Stopped,
    /// The call's task failed (a fault of the server's own, logged where it happened).
    #[error("the call failed inside the server")]
    Internal,
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
            Self::Stopped => "AI-0013",
            Self::Internal => "AI-0014",
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
            Self::Stopped => "stopped",
            Self::Internal => "internal",
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
            Self::Internal => ErrorKind::Internal,
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

    /// The API the endpoint speaks, where it speaks one: a call's [`Raw`] part goes only
    /// to an endpoint of the same API.
    fn protocol(&self) -> Option<Protocol> {
        None
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
