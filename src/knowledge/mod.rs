//! Knowledge: a tenant's documents, cut into passages and indexed for search inside the
//! tenant's own file. So far the two pure pieces the rest is built on: [`chunk`] (passages
//! on paragraph and sentence boundaries, with overlap, as byte spans that citations name)
//! and [`query`] (search text as an FTS5 query that user input cannot break).

pub mod chunk;
pub mod query;
