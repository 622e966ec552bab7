//! The assistant: [`context`] builds what a model sees from one tenant's knowledge and reads
//! its citations back; [`extractive`] answers with no model at all; [`model`] is what every
//! model endpoint offers; [`assistant`] keeps conversations and audits each turn.

pub mod assistant;
pub mod context;
pub mod extractive;
pub mod model;

pub use assistant::SCHEMA;
