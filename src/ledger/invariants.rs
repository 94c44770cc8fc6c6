//! The six invariants of the ledger (design.md §5), checked over a whole state. Tests
//! run this after arbitrary operation sequences; `verify` tools can run it too.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::{Account, DeferralStatus, Fen, Side, UnidentifiedStatus};

use super::MemState;

/// Returns the first invariant that does not hold, in words.
pub fn check(state: &MemState) -> Result<(), String> {
    // 4. Gap-free sequence numbers from 1.
    for (i, (seq, entry)) in state.entries.iter().enumerate() {
        let want = i as u64 + 1;
        if *seq != want || entry.sequence != want {
            return Err(format!("journal gap: entry {seq} at position {want}"));
        }
    }
    // 1. Every entry balances.
    for entry in state.entries.values() {
        let sum = |side| -> i128 {
            entry
                .postings
                .iter()
                .filter(|p| p.side == side)
                .map(|p| i128::from(p.amount.0))
                .sum()
        };
        if sum(Side::Debit) != sum(Side::Credit) {
            return Err(format!("entry {} does not balance", entry.sequence));
        }
    }
    // 2. No case's available balance is negative; reservations match open requests.
    let mut reserved: BTreeMap<Uuid, i64> = BTreeMap::new();
    for d in state.disbursements.values() {
        if d.status.holds_reservation() {
            *reserved.entry(d.case_id).or_default() += d.amount.fen().0;
        }
    }
    for case in state.cases.values() {
        if case.balances.available().is_negative() {
            return Err(format!("case {} has negative available", case.case_number));
        }
        let want = reserved.get(&case.id).copied().unwrap_or(0);
        if case.balances.reserved != Fen(want) {
            return Err(format!(
                "case {} reserves {} but its open disbursements sum to {}",
                case.case_number,
                case.balances.reserved,
                Fen(want)
            ));
        }
    }
    // 3. Bank = Σ case balances + suspense, per special account; postings agree.
    for special in state.specials.values() {
        let cases: i64 = state
            .cases
            .values()
            .filter(|c| c.special_id == special.id)
            .map(|c| c.balances.balance().0)
            .sum();
        if special.bank_balance.0 != cases + special.suspense_balance.0 {
            return Err(format!(
                "special account {}: bank {} != cases {} + suspense {}",
                special.id,
                special.bank_balance,
                Fen(cases),
                special.suspense_balance
            ));
        }
        let posted: i64 = state
            .entries
            .values()
            .flat_map(|e| e.postings.iter())
            .filter(|p| p.account == Account::Bank(special.id))
            .map(|p| match p.side {
                Side::Debit => p.amount.0,
                Side::Credit => -p.amount.0,
            })
            .sum();
        if posted != special.bank_balance.0 {
            return Err(format!(
                "special account {}: postings disagree with balance",
                special.id
            ));
        }
    }
    // 3'. Suspense is exactly the unidentified receipts still waiting in it.
    for special in state.specials.values() {
        let waiting: i64 = state
            .unidentified
            .values()
            .filter(|u| u.special_id == special.id && u.status == UnidentifiedStatus::InSuspense)
            .map(|u| u.amount.fen().0)
            .sum();
        if special.suspense_balance.0 != waiting {
            return Err(format!(
                "special account {}: suspense {} but the receipts waiting in it sum to {}",
                special.id,
                special.suspense_balance,
                Fen(waiting)
            ));
        }
        if special.suspense_balance.is_negative() {
            return Err(format!("special account {}: negative suspense", special.id));
        }
    }
    // Deferrals counted on a case are exactly its approved deferrals that have not
    // ended (one awaiting approval or rejected holds nothing back); a case with money
    // has the day it started waiting, and one without has none.
    for case in state.cases.values() {
        let active = state
            .deferrals
            .values()
            .filter(|d| d.case_id == case.id && d.status() == DeferralStatus::Active)
            .count();
        if case.clock.active_deferrals as usize != active {
            return Err(format!(
                "case {} counts {} active deferrals but has {active}",
                case.case_number, case.clock.active_deferrals
            ));
        }
        if (case.balances.balance().0 > 0) != case.clock.held_since.is_some() {
            return Err(format!(
                "case {} holds {} but its clock says held since {:?}",
                case.case_number,
                case.balances.balance(),
                case.clock.held_since
            ));
        }
    }
    // The bank lines are every movement of the bank balance.
    for special in state.specials.values() {
        let lines: i64 = state
            .bank_lines
            .iter()
            .filter(|((s, _), _)| *s == special.id)
            .map(|(_, l)| l.amount.0)
            .sum();
        if lines != special.bank_balance.0 {
            return Err(format!(
                "special account {}: bank lines sum to {} but the bank balance is {}",
                special.id,
                Fen(lines),
                special.bank_balance
            ));
        }
    }
    // 6. A request id has one entry; a bank reference at most one.
    // A request found by its bank reference points at the original entry, through the
    // AlreadyRecorded entry that bound its id.
    let bound: std::collections::HashMap<_, _> = state
        .entries
        .values()
        .filter(|e| matches!(e.op, crate::domain::Op::AlreadyRecorded { .. }))
        .map(|e| (&e.request_id, e.answer()))
        .collect();
    for (id, record) in &state.requests {
        match state.entries.get(&record.sequence) {
            Some(e) if &e.request_id == id => {}
            Some(_) if bound.get(id) == Some(&record.sequence) => {}
            _ => return Err(format!("request {id} does not point at its entry")),
        }
    }
    // 5. Replaying the journal reproduces the state exactly.
    let replayed = MemState::replay(state.entries.values()).map_err(|f| f.to_string())?;
    if &replayed != state {
        return Err("replaying the journal does not reproduce the state".into());
    }
    Ok(())
}
