//! The one error type of the domain. `api` maps it to a gRPC status in one place.

/// Why a single value (an amount, a case number, a court code …) is not acceptable.
/// It does not know which request field it came from; [`InvalidValue::on`] adds that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }

    /// Names the request field the value came from.
    pub fn on(self, field: impl Into<String>) -> DomainError {
        DomainError::Invalid {
            field: field.into(),
            reason: self.0,
        }
    }
}

/// Everything a request can be refused for. Each variant maps to one gRPC code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed input: the field and what is wrong with it (INVALID_ARGUMENT).
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The thing named does not exist (NOT_FOUND).
    #[error("{what} not found")]
    NotFound { what: String },
    /// The thing to create exists already (ALREADY_EXISTS).
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// A rule of the domain forbids it now: funds, state, closure (FAILED_PRECONDITION).
    #[error("{0}")]
    Rule(String),
    /// The principal may not do this, by a rule of the domain such as four eyes
    /// (PERMISSION_DENIED).
    #[error("{0}")]
    Forbidden(String),
    /// The request id was used before for a different request (ABORTED).
    #[error("request_id {request_id} was already used for a different request")]
    RequestIdReused { request_id: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub fn rule(reason: impl Into<String>) -> Self {
        Self::Rule(reason.into())
    }

    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden(reason.into())
    }
}
