//! Reads for reconciliation: everything as of one journal sequence, so that a run
//! sees one consistent ledger while writes go on (ARCHITECTURE.md, "Reconciliation").
//! Kept apart from `reads.rs`; each function is one key lookup or one range scan.

use uuid::Uuid;

use crate::domain::{BankLine, CaseFacts, CaseNumber, UnidentifiedReceiptState};
use crate::ledger::Fault;

use super::keys;
use super::state::{decode, SledState};

fn fault(e: sled::Error) -> Fault {
    Fault(e.to_string())
}

fn id_at_end(key: &[u8]) -> Result<Uuid, Fault> {
    let bytes: [u8; 16] = key
        .get(key.len().saturating_sub(16)..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Fault("malformed index key".into()))?;
    Ok(Uuid::from_bytes(bytes))
}

impl SledState {
    /// The case's facts after its last entry at or before `sequence`; `None` if the
    /// case had no entry yet (it did not exist then).
    pub fn case_facts_at(
        &self,
        case_number: &CaseNumber,
        sequence: u64,
    ) -> Result<Option<CaseFacts>, Fault> {
        let prefix = keys::case_facts_prefix(case_number);
        let from = keys::case_facts(case_number, sequence);
        match self.tree.range(from..).next() {
            Some(item) => {
                let (key, value) = item.map_err(fault)?;
                if !key.starts_with(&prefix) {
                    return Ok(None);
                }
                decode(&value).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Each case's facts as of `sequence` (its last line at or before it), with the
    /// court code its key begins with, in the order of the ordered keys: one pass over
    /// the compact facts lines instead of decoding every case record.
    pub fn for_each_case_facts(
        &self,
        sequence: u64,
        mut f: impl FnMut(&str, CaseFacts) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        let mut done: Vec<u8> = Vec::new();
        for item in self.tree.scan_prefix(keys::CASE_FACTS_PREFIX) {
            let (key, value) = item.map_err(fault)?;
            let split = key
                .len()
                .checked_sub(8)
                .ok_or_else(|| Fault("malformed facts key".into()))?;
            let (case, tail) = key.split_at(split);
            if case == done.as_slice() {
                continue;
            }
            let inverted: [u8; 8] = tail
                .try_into()
                .map_err(|_| Fault("malformed facts key".into()))?;
            // Lines run from the latest entry back: skip those after the snapshot.
            if !u64::from_be_bytes(inverted) > sequence {
                continue;
            }
            done.clear();
            done.extend_from_slice(case);
            let court_end = case
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| Fault("malformed facts key".into()))?;
            let court = std::str::from_utf8(case.get(1..court_end).unwrap_or_default())
                .map_err(|_| Fault("malformed facts key".into()))?;
            f(court, decode(&value)?)?;
        }
        Ok(())
    }

    /// The bank lines of a special account with sequence at or before `until`, in
    /// journal order.
    pub fn bank_lines(
        &self,
        special_id: Uuid,
        until: u64,
    ) -> impl Iterator<Item = Result<(u64, BankLine), Fault>> + '_ {
        let start = keys::bank_lines(special_id);
        let end = keys::bank_line(special_id, until);
        self.tree.range(start..=end).map(|item| {
            let (key, value) = item.map_err(fault)?;
            let seq = keys::case_line_sequence(&key)
                .ok_or_else(|| Fault("malformed bank line key".into()))?;
            Ok((seq, decode(&value)?))
        })
    }

    /// A special account's unidentified receipts in the order recorded, after the
    /// receipt `after` (a page token), at most `limit`; with the token of the next
    /// page when there may be one.
    pub fn list_unidentified(
        &self,
        special_id: Uuid,
        after: Option<Uuid>,
        limit: usize,
        only_in_suspense: bool,
    ) -> Result<(Vec<UnidentifiedReceiptState>, Option<Uuid>), Fault> {
        let prefix = keys::unidentified_by_special_prefix(special_id);
        let start = match after {
            Some(id) => {
                let mut k = keys::unidentified_by_special(special_id, id);
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (key, _) = item.map_err(fault)?;
            if !key.starts_with(&prefix) {
                break;
            }
            let id = id_at_end(&key)?;
            if out.len() >= limit {
                // Another receipt follows: the page ends at the last one returned.
                let next = out.last().map(|u: &UnidentifiedReceiptState| u.id);
                return Ok((out, next));
            }
            let u: UnidentifiedReceiptState = self
                .get(&keys::unidentified(id))?
                .ok_or_else(|| Fault(format!("index names missing unidentified receipt {id}")))?;
            if only_in_suspense && u.status != crate::domain::UnidentifiedStatus::InSuspense {
                continue;
            }
            out.push(u);
        }
        Ok((out, None))
    }

    /// Every unidentified receipt of a special account, one at a time.
    pub fn scan_unidentified(
        &self,
        special_id: Uuid,
    ) -> impl Iterator<Item = Result<UnidentifiedReceiptState, Fault>> + '_ {
        self.tree
            .scan_prefix(keys::unidentified_by_special_prefix(special_id))
            .map(move |item| {
                let (key, _) = item.map_err(fault)?;
                let id = id_at_end(&key)?;
                self.get(&keys::unidentified(id))?
                    .ok_or_else(|| Fault(format!("index names missing unidentified receipt {id}")))
            })
    }
}
