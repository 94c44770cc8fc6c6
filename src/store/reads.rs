//! Reads beyond the posting rules' needs: listings, statements, and the past.

use uuid::Uuid;

use crate::domain::{Balances, CaseFacts, CaseNumber, Micros, SpecialAccountState, SpecialLine};
use crate::ledger::{Fault, State};

use super::keys;
use super::state::{decode, LineGroup, SledState};

fn fault(e: super::kv::Error) -> Fault {
    Fault(e.to_string())
}

impl SledState {
    /// Special accounts whose court code starts with `court_prefix`, in key order,
    /// after the key `after` (a page token), at most `limit`.
    pub fn list_specials(
        &self,
        court_prefix: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, SpecialAccountState)>, Fault> {
        let prefix = keys::special_by_court_prefix(court_prefix);
        // A page starts just after its token, so each page costs its own size only.
        let start = match after {
            Some(a) if a >= prefix.as_slice() => std::ops::Bound::Excluded(a.to_vec()),
            _ => std::ops::Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for item in self
            .tree
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
        {
            let (key, _) = item.map_err(fault)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let id_bytes: [u8; 16] = key
                .get(key.len().saturating_sub(16)..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Fault("malformed court index key".into()))?;
            let id = Uuid::from_bytes(id_bytes);
            let special = self
                .special(id)?
                .ok_or_else(|| Fault(format!("court index names missing special account {id}")))?;
            out.push((key.to_vec(), special));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Lines of a case's statement with `after < sequence <= until`, at most `limit`,
    /// oldest first. They are the case's facts lines, whose keys run from the newest
    /// entry back, so a page is read backwards; it costs its own length.
    pub fn case_lines(
        &self,
        case_number: &CaseNumber,
        after: u64,
        until: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Balances)>, Fault> {
        if after >= until {
            return Ok(Vec::new());
        }
        let newest = keys::case_facts(case_number, until);
        let oldest = keys::case_facts(case_number, after.saturating_add(1));
        let mut out = Vec::new();
        for item in self.tree.range(newest..=oldest).rev().take(limit) {
            let (key, value) = item.map_err(fault)?;
            let sequence = keys::case_facts_sequence(&key)
                .ok_or_else(|| Fault("malformed facts key".into()))?;
            let facts: CaseFacts = decode(&value)?;
            out.push((sequence, facts.balances));
        }
        Ok(out)
    }

    /// The case's balances after the last of its entries at or before `sequence`.
    pub fn case_balances_at(
        &self,
        case_number: &CaseNumber,
        sequence: u64,
    ) -> Result<Option<Balances>, Fault> {
        Ok(self
            .case_facts_at(case_number, sequence)?
            .map(|facts| facts.balances))
    }

    /// The group holding a special account's last line at or before `sequence`.
    pub(crate) fn line_group_at(
        &self,
        special_id: Uuid,
        sequence: u64,
    ) -> Result<Option<LineGroup>, Fault> {
        let start = keys::special_lines(special_id);
        let end = keys::special_line(special_id, sequence);
        match self.tree.range(start..=end).next_back() {
            Some(item) => decode(&item.map_err(fault)?.1).map(Some),
            None => Ok(None),
        }
    }

    /// A special account's money after the last of its entries at or before `sequence`.
    pub fn special_line_at(
        &self,
        special_id: Uuid,
        sequence: u64,
    ) -> Result<Option<SpecialLine>, Fault> {
        let group = self
            .line_group_at(special_id, sequence)?
            .unwrap_or_default();
        let last = group.into_iter().rev().find(|(seq, _)| *seq <= sequence);
        Ok(last.map(|(_, record)| record.line))
    }

    /// The last sequence recorded at or before `at` (0 if none). The journal clock never
    /// runs backwards, so a binary search over sequences finds it.
    pub fn sequence_at(&self, at: Micros) -> Result<u64, Fault> {
        let (mut lo, mut hi) = (0u64, self.last_sequence()?);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let entry = self
                .entry(mid)?
                .ok_or_else(|| Fault(format!("journal entry {mid} is missing")))?;
            if entry.recorded_at <= at {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }
}

/// Totals over the whole ledger, for the metrics' gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub open_case_accounts: u64,
    pub special_accounts: u64,
    pub suspense: crate::domain::Fen,
    pub bank: crate::domain::Fen,
}

impl SledState {
    /// One pass over every case and special account record. Its cost grows with the
    /// number of cases, so callers compute it at an interval, never per scrape.
    pub fn ledger_totals(&self) -> Result<LedgerTotals, Fault> {
        let mut t = LedgerTotals::default();
        for item in self.tree.scan_prefix(b"c") {
            let (_, bytes) = item.map_err(fault)?;
            let case: crate::domain::CaseState = decode(&bytes)?;
            if case.status == crate::domain::AccountStatus::Open {
                t.open_case_accounts += 1;
            }
        }
        for item in self.tree.scan_prefix(b"s") {
            let (_, bytes) = item.map_err(fault)?;
            let special: SpecialAccountState = decode(&bytes)?;
            t.special_accounts += 1;
            t.suspense = t
                .suspense
                .checked_add(special.suspense_balance)
                .ok_or_else(|| Fault("suspense total overflows".into()))?;
            t.bank = t
                .bank
                .checked_add(special.bank_balance)
                .ok_or_else(|| Fault("bank total overflows".into()))?;
        }
        Ok(t)
    }
}
