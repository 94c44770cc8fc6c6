//! The gRPC surface: tonic services over the store. The only module that knows protobuf;
//! it validates every field into domain types, submits commands, and maps refusals to
//! statuses in one place (`error`).

pub mod auth;
pub mod authz;
mod cases;
pub mod convert;
pub mod error;
mod journal;
pub mod limits;
pub mod principals;
pub mod receipts;
mod reconcile;
pub use reconcile::ROWS_PER_MESSAGE_MAX;
mod specials;
mod suspense;

pub use cases::CaseLedgerService;
pub use journal::{JournalService, JOURNAL_SCANS_MAX};
pub use principals::PrincipalsService;
pub use reconcile::{ReconciliationService, RECONCILE_RUNS_MAX};
pub use specials::SpecialAccountsService;

/// The generated protobuf and gRPC code.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("case_escrow.v1");

    /// For server reflection, so stock tools (grpcurl) can discover the API.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("case_escrow_descriptor");
}

use tonic::Status;

use crate::domain::Micros;
use crate::ledger::Fault;
use crate::store::SledState;

/// Default and largest page of a listing.
pub const PAGE_SIZE_DEFAULT: usize = 100;
pub const PAGE_SIZE_MAX: usize = 1000;

pub(crate) fn page_size(requested: u32) -> Result<usize, Status> {
    match requested as usize {
        0 => Ok(PAGE_SIZE_DEFAULT),
        n if n > PAGE_SIZE_MAX => Err(Status::invalid_argument(format!(
            "page_size: at most {PAGE_SIZE_MAX}"
        ))),
        n => Ok(n),
    }
}

impl From<Fault> for Status {
    fn from(f: Fault) -> Status {
        error::fault(f)
    }
}

/// The journal sequence and the moment a read answers for: `as_of`, or now.
pub(crate) fn resolve_as_of(
    reads: &SledState,
    as_of: Option<&pb::AsOf>,
) -> Result<(u64, Micros), Status> {
    let last = reads.last_sequence()?;
    let now = now();
    match as_of.and_then(|a| a.point.as_ref()) {
        None => Ok((last, now)),
        Some(pb::as_of::Point::Sequence(seq)) => {
            if *seq > last {
                return Err(Status::invalid_argument(format!(
                    "as_of.sequence: {seq} is beyond the last entry {last}"
                )));
            }
            Ok((*seq, now))
        }
        Some(pb::as_of::Point::Time(ts)) => {
            let at = convert::time("as_of.time", ts)?;
            Ok((reads.sequence_at(at)?, at))
        }
    }
}

pub(crate) fn now() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
