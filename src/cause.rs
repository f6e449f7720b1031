//! The cause carried by the errors of warehouses and sources: a one-line message for users
//! and, where there is one, the error it came from, as the source.

/// Why a call failed: the message users see (one line, the server's own words
/// where there are some) and, when it came from another error, that error as the source, so
/// callers can inspect it (e.g. downcast to `tokio_postgres::Error` for its SQLSTATE).
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    /// `error`, described by its own message.
    pub fn of(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause { message: crate::text::one_line(&error), source: Some(Box::new(error)) }
    }

    /// `error`, described by its message and its sources' (`error_chain`).
    pub fn chained(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause { message: error_chain(&error), source: Some(Box::new(error)) }
    }

    /// `error`, described by `message` (e.g. the server's message with its detail).
    pub fn with_message(
        message: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Cause {
        Cause { message: message.into(), source: Some(Box::new(error)) }
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause { message, source: None }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        Cause { message: message.to_string(), source: None }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// `error` and its sources in one line, each once: "outer: inner: innermost". A source whose
/// text its outer error already shows ends the walk (that error described it, and what lies
/// below it).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if text.contains(&part) {
            break;
        }
        text.push_str(": ");
        text.push_str(&part);
        next = source.source();
    }
    crate::text::one_line(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the file")]
    struct Reading(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.toml: {0}")]
    struct Repeats(#[source] std::io::Error);

    fn missing() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "No such file")
    }

    #[test]
    fn each_cause_is_shown_once() {
        assert_eq!(error_chain(&Reading(missing())), "reading the file: No such file");
        assert_eq!(error_chain(&Repeats(missing())), "cannot read x.toml: No such file");
        let cause = Cause::with_message("ERROR: boom (detail)", missing());
        let e = crate::warehouse::WarehouseError::Query { context: "SELECT 1".into(), cause };
        assert_eq!(error_chain(&e), "SELECT 1: ERROR: boom (detail)");
        let source = std::error::Error::source(&e).and_then(|c| c.source());
        assert!(source.is_some_and(|s| s.is::<std::io::Error>()), "the original error stays reachable");
    }

    #[test]
    fn a_message_alone_has_no_source() {
        let cause = Cause::from("stopped");
        assert!(std::error::Error::source(&cause).is_none());
        assert_eq!(cause.to_string(), "stopped");
    }
}
