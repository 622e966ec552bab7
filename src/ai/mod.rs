//! The assistant: [`context`] builds what a model sees from one tenant's knowledge and reads
//! its citations back; [`extractive`] answers with no model at all; [`model`] is what every
//! model endpoint offers, and [`http`] is each endpoint over HTTP, reached only where
//! [`egress`] allows; [`assistant`] keeps conversations and audits each turn.

pub mod assistant;
pub mod calls;
pub mod context;
pub mod egress;
pub mod extractive;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod model;
pub mod outgoing;
pub mod refusals;

pub use assistant::SCHEMA;
