//! The posting rules: requests become journal entries, entries become balances.
//!
//! `decide` reads the state and turns a request into an [`Op`] with its postings, or a
//! refusal; `apply` writes an entry's effects. Both are generic over [`State`], so the
//! writer (over sled), the replay at start-up and the property tests (over
//! [`MemState`]) run the very same rules.

mod apply;
pub mod command;
mod execute;
pub mod invariants;
mod mem;
pub mod state;

pub use apply::apply;
pub use command::{CaseKey, Command, Receipt, Request, UnmatchedKey};
pub use execute::{
    decide, Context, Decision, LedgerError, CASE_SERIAL_MAX, REVERSAL_CHAIN_MAX, SPECIAL_SERIAL_MAX,
};
pub use mem::MemState;
pub use state::{Fault, State, StateMut};

use crate::domain::Entry;

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub sequence: u64,
    /// True when the request (or its bank reference) had been recorded before.
    pub existing: bool,
}

/// Decides and, for a new entry, applies it. The caller supplies the clock and ids;
/// the time never runs backwards so that time and sequence order agree.
pub fn execute(
    state: &mut impl StateMut,
    request: &Request,
    ctx: &Context,
) -> Result<(Outcome, Option<Entry>), LedgerError> {
    match decide(state, request, ctx)? {
        Decision::Existing(sequence) => Ok((
            Outcome {
                sequence,
                existing: true,
            },
            None,
        )),
        Decision::New { op, postings } => {
            let meta = state.meta()?;
            let entry = Entry {
                sequence: meta.next_sequence.max(1),
                request_id: request.id.clone(),
                request_hash: request.content_hash(),
                recorded_at: ctx.now.max(meta.last_recorded_at),
                op,
                postings,
                principal: request.principal,
            };
            apply(state, &entry)?;
            Ok((
                Outcome {
                    sequence: entry.answer(),
                    existing: entry.answer() != entry.sequence,
                },
                Some(entry),
            ))
        }
    }
}
