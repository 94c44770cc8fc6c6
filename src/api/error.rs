//! Every refusal becomes a gRPC status here, in one place.

use tonic::{Code, Status};

use crate::domain::DomainError;
use crate::ledger::{Fault, LedgerError};
use crate::store::WriteError;

pub fn domain(e: DomainError) -> Status {
    let code = match &e {
        DomainError::Invalid { .. } => Code::InvalidArgument,
        DomainError::NotFound { .. } => Code::NotFound,
        DomainError::AlreadyExists { .. } => Code::AlreadyExists,
        DomainError::Rule(_) => Code::FailedPrecondition,
        DomainError::Forbidden(_) => Code::PermissionDenied,
        DomainError::RequestIdReused { .. } => Code::Aborted,
    };
    Status::new(code, e.to_string())
}

/// Our own fault: logged in full, reported without internals.
pub fn fault(f: Fault) -> Status {
    tracing::error!(fault = %f, "internal fault");
    Status::internal(format!("internal error: {}", f.0))
}

pub fn write(e: WriteError) -> Status {
    match e {
        WriteError::Ledger(LedgerError::Domain(d)) => domain(d),
        WriteError::Ledger(LedgerError::Fault(f)) => fault(f),
        WriteError::Unavailable(why) => Status::unavailable(why),
        WriteError::DiskFull(why) => Status::resource_exhausted(why),
    }
}

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Status {
        domain(e)
    }
}

/// The gRPC code as the API documentation writes it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
