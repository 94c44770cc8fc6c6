//! Reconciliation: the ledger against the case-flow data of the case management
//! system, and against the bank's statement of a special account.
//!
//! Pure where it can be: [`case_flow`] and [`bank`] turn one row and the ledger's
//! facts about it into discrepancies, with no I/O; [`snapshot`] reads those facts
//! from sled as of one journal sequence, fixed when a run starts, so that writes going
//! on meanwhile never change a run's answer. The gRPC service (`api::reconcile`)
//! streams rows in and discrepancies out.

pub mod bank;
pub mod case_flow;
pub mod report;
pub mod snapshot;

pub use report::{Discrepancy, Kind, Severity};

/// How long money may wait, in days. Configuration, with the legal defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Received money is paid out within this many days (30 by law).
    pub disburse_within_days: u32,
    /// Once a deferral ends, payment is due within this many days (10 by law).
    pub after_deferral_days: u32,
    /// An unidentified receipt older than this many calendar days is reported. Local
    /// rules say "3 working days"; calendar days are the stricter reading.
    pub suspense_age_days: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            disburse_within_days: 30,
            after_deferral_days: 10,
            suspense_age_days: 3,
        }
    }
}

impl Limits {
    /// These limits with any non-zero field of `other` in place of its own.
    pub fn overridden_by(self, disburse: u32, after_deferral: u32, suspense: u32) -> Limits {
        let pick = |given: u32, own: u32| if given == 0 { own } else { given };
        Limits {
            disburse_within_days: pick(disburse, self.disburse_within_days),
            after_deferral_days: pick(after_deferral, self.after_deferral_days),
            suspense_age_days: pick(suspense, self.suspense_age_days),
        }
    }
}
