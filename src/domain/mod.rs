//! The domain: validated values and the records of the journal. Pure: no I/O, no wire
//! format. Once a value of these types exists it is valid, so the layers above never
//! check the same thing twice.

pub mod case_number;
pub mod court_code;
pub mod entry;
pub mod error;
pub mod money;
pub mod principal;
pub mod text;
pub mod van;

pub use case_number::CaseNumber;
pub use court_code::CourtCode;
pub use entry::*;
pub use error::{DomainError, InvalidValue};
pub use money::{Amount, Fen};
pub use principal::{Access, ApprovalTiers, PrincipalState, Role};
pub use text::{BankRef, Date, Micros, RequestId, Text};
pub use van::VirtualAccountNumber;
