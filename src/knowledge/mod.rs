//! Knowledge: a tenant's documents, cut into passages and indexed for search inside the
//! tenant's own file. [`chunk`] cuts passages on paragraph and sentence boundaries, with
//! overlap, as byte spans that citations name; [`extract`] takes the text out of HTML and
//! PDF files; [`query`] turns search text into an FTS5
//! query that user input cannot break; [`library`] keeps documents, versions, passages and
//! the index, through the door.

pub mod chunk;
pub mod extract;
pub mod library;
pub mod query;

pub use library::{KnowledgeError, SCHEMA};
