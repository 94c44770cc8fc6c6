//! The six invariants of the ledger (design.md §5), checked over a whole state. Tests
//! run this after arbitrary operation sequences; `verify` tools can run it too.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::{Account, Fen, Side};

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
    // 6. A request id has one entry; a bank reference at most one.
    for (id, record) in &state.requests {
        match state.entries.get(&record.sequence) {
            Some(e) if &e.request_id == id => {}
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
