//! Where a store lives (a SQLite file or a PostgreSQL database) and how to open it: the one
//! place that knows both backends, so [`crate::backend`] stays the boundary they implement.

use crate::backend::Backend;
use crate::StoreError;
use std::path::PathBuf;

/// Where a store lives: a SQLite file or a PostgreSQL database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbTarget {
    Sqlite(PathBuf),
    /// A libpq-style URL, `postgres://user[:password]@host[:port]/dbname`.
    Postgres(String),
}

impl DbTarget {
    /// `postgres://...` or `postgresql://...` is PostgreSQL; anything else is a SQLite path.
    pub fn parse(s: &str) -> DbTarget {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            DbTarget::Postgres(s.to_string())
        } else {
            DbTarget::Sqlite(PathBuf::from(s))
        }
    }

    /// Opens a connection (for PostgreSQL: a session; for SQLite: the file, which must exist
    /// unless `create`).
    pub fn connect(&self, create: bool) -> Result<Box<dyn Backend>, StoreError> {
        match self {
            DbTarget::Sqlite(p) => {
                if !create && !p.exists() {
                    return Err(StoreError::NotFound(format!(
                        "{} does not exist: run `tally init` first",
                        p.display()
                    )));
                }
                Ok(Box::new(crate::sqlite::SqliteBackend::open(p)?))
            }
            DbTarget::Postgres(url) => Ok(Box::new(crate::pg::PgBackend::connect(url)?)),
        }
    }
}

impl std::fmt::Display for DbTarget {
    /// The path, or the URL with any password hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbTarget::Sqlite(p) => write!(f, "{}", p.display()),
            DbTarget::Postgres(url) => f.write_str(&crate::pg::redact_url(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_hidden_passwords() {
        assert_eq!(
            DbTarget::parse("results.db"),
            DbTarget::Sqlite("results.db".into())
        );
        let pg = DbTarget::parse("postgres://tally:secret@db:5432/tally");
        assert!(matches!(pg, DbTarget::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://tally:***@db:5432/tally");
        assert_eq!(
            DbTarget::parse("postgresql://tally@db/tally").to_string(),
            "postgresql://tally@db/tally"
        );
    }
}
