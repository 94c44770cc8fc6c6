//! Reads for reconciliation: everything as of one journal sequence, so that a run
//! sees one consistent ledger while writes go on (ARCHITECTURE.md, "Reconciliation").
//! Kept apart from `reads.rs`; each function is one key lookup or one range scan.

use uuid::Uuid;

use super::kv::Bytes;
use crate::domain::{BankLine, CaseFacts, CaseNumber, UnidentifiedReceiptState};
use crate::ledger::Fault;

use super::keys;
use super::state::{decode, LineGroup, SledState};

fn fault(e: super::kv::Error) -> Fault {
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

    /// A reader of case facts as of `sequence` that keeps its place between reads:
    /// [`FactsReader`].
    pub fn facts_reader(&self, sequence: u64) -> FactsReader {
        FactsReader {
            state: self.clone(),
            sequence,
            cursors: Vec::new(),
            reads: 0,
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
    /// journal order: its special lines that carry one.
    pub fn bank_lines(
        &self,
        special_id: Uuid,
        until: u64,
    ) -> impl Iterator<Item = Result<(u64, BankLine), Fault>> + '_ {
        let start = keys::special_lines(special_id);
        let end = keys::special_line(special_id, until);
        self.tree.range(start..=end).flat_map(move |item| {
            let group = item
                .map_err(fault)
                .and_then(|(_, value)| decode::<LineGroup>(&value));
            let lines: Vec<Result<(u64, BankLine), Fault>> = match group {
                Ok(group) => (group.into_iter())
                    .filter(|(seq, _)| *seq <= until)
                    .filter_map(|(seq, record)| record.bank.map(|bank| Ok((seq, bank))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            lines
        })
    }

    /// The bank line entry `sequence` made on a special account, if it moved its bank
    /// balance.
    pub fn bank_line(&self, special_id: Uuid, sequence: u64) -> Result<Option<BankLine>, Fault> {
        let group = self
            .line_group_at(special_id, sequence)?
            .unwrap_or_default();
        Ok(
            match group.binary_search_by_key(&sequence, |(seq, _)| *seq) {
                Ok(i) => group.into_iter().nth(i).and_then(|(_, record)| record.bank),
                Err(_) => None,
            },
        )
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

/// Courts whose place a [`FactsReader`] keeps at once. An export that interleaves more
/// courts than this still reads correctly, with a seek for most rows.
const CURSORS_MAX: usize = 64;
/// Keys a cursor steps over before it gives up and seeks. Rows in filing order need
/// one or two steps (the older lines of the case before); a step mostly takes the
/// next key already read ahead, a seek is a fresh range read.
const STEPS_MAX: u32 = 4;

/// Reads case facts as of one sequence, like [`SledState::case_facts_at`], but keeps
/// one cursor per court (the keys read ahead from where the last read of that court
/// ended). A case
/// after it in key order is then found by stepping over the few keys between (a row
/// in case-number or filing order), anything else by a fresh seek: any order of
/// reads gives the same answers, an ordered one just costs less.
///
/// Writes that go on meanwhile add only lines after the snapshot (`!sequence` sorts
/// them before every line at or before it, within their case) or cases that did not
/// exist at it, so an iterator that does or does not see them gives the same answer.
pub struct FactsReader {
    state: SledState,
    sequence: u64,
    cursors: Vec<Cursor>,
    /// Reads served so far: orders cursors by last use, for eviction.
    reads: u64,
}

struct Cursor {
    /// `q` + court code + 0: the prefix of every facts key of the court.
    court: Vec<u8>,
    /// The key and value the cursor stands on; `None` once the court's keys are
    /// exhausted.
    at: Option<(Bytes, Bytes)>,
    /// The keys after `at`, read ahead. The engine's iterators cannot be kept (they
    /// are not `Send`, and each holds its tree's manifest for as long as it lives), so
    /// the cursor reads [`READ_AHEAD`] keys at a time and lets the iterator go.
    ahead: std::collections::VecDeque<(Bytes, Bytes)>,
    /// Whether the court has keys beyond `ahead` (the last read filled it).
    more: bool,
    /// No key of the court lies in `[gap_from, at)` (up to the court's end when `at`
    /// is `None`), so any target in that range is answered by `at`.
    gap_from: Vec<u8>,
    used: u64,
}

/// Keys a cursor reads at once: enough that rows in order mostly step within what was
/// read; few enough that a seek reads little it does not use.
const READ_AHEAD: usize = 32;

/// The first key after `key`: `key` followed by a 0 byte.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl Cursor {
    /// The end of the court's keys: its prefix ends with its 0 separator, and raising
    /// it to 1 bounds the court's keys and no others.
    fn court_end(court: &[u8]) -> Vec<u8> {
        let mut end = court.to_vec();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        end
    }

    /// Up to [`READ_AHEAD`] of the court's keys from `from` on; true if there are more.
    fn read(
        state: &SledState,
        court: &[u8],
        from: Vec<u8>,
        into: &mut std::collections::VecDeque<(Bytes, Bytes)>,
    ) -> Result<bool, Fault> {
        for item in state
            .tree
            .range(from..Self::court_end(court))
            .take(READ_AHEAD)
        {
            into.push_back(item.map_err(fault)?);
        }
        Ok(into.len() == READ_AHEAD)
    }

    fn seek(state: &SledState, court: &[u8], target: &[u8], used: u64) -> Result<Cursor, Fault> {
        let mut ahead = std::collections::VecDeque::with_capacity(READ_AHEAD);
        let more = Self::read(state, court, target.to_vec(), &mut ahead)?;
        Ok(Cursor {
            court: court.to_vec(),
            at: ahead.pop_front(),
            ahead,
            more,
            gap_from: target.to_vec(),
            used,
        })
    }

    /// Whether `target` falls in the gap before `at`.
    fn answers(&self, target: &[u8]) -> bool {
        self.gap_from.as_slice() <= target
            && self
                .at
                .as_ref()
                .is_none_or(|(key, _)| target <= key.as_ref())
    }

    /// Steps forward until `target` falls in the gap before `at`, at most
    /// [`STEPS_MAX`] keys; false if it did not get there.
    fn step_to(&mut self, state: &SledState, target: &[u8]) -> Result<bool, Fault> {
        for _ in 0..STEPS_MAX {
            let Some((key, _)) = &self.at else {
                return Ok(false);
            };
            if target < key.as_ref() {
                return Ok(false);
            }
            self.gap_from = successor(key);
            if self.ahead.is_empty() && self.more {
                self.more = Self::read(state, &self.court, self.gap_from.clone(), &mut self.ahead)?;
            }
            self.at = self.ahead.pop_front();
            if self.answers(target) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl FactsReader {
    /// The sequence the reader reads as of.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The case's facts after its last entry at or before the reader's sequence;
    /// `None` if the case had no entry yet: the same answer as
    /// [`SledState::case_facts_at`].
    pub fn case_facts(&mut self, case_number: &CaseNumber) -> Result<Option<CaseFacts>, Fault> {
        let target = keys::case_facts(case_number, self.sequence);
        let malformed = || Fault("malformed facts key".into());
        let prefix = target
            .get(..target.len().saturating_sub(8))
            .ok_or_else(malformed)?;
        // `q`, the court code and its 0 separator.
        let court_len = 1 + case_number.court().as_str().len() + 1;
        let court = target.get(..court_len).ok_or_else(malformed)?;
        self.reads += 1;
        let used = self.reads;
        let found = match self.cursors.iter().position(|c| c.court == court) {
            Some(i) => {
                let cursor = &mut self.cursors[i];
                cursor.used = used;
                if !(cursor.answers(&target) || cursor.step_to(&self.state, &target)?) {
                    *cursor = Cursor::seek(&self.state, court, &target, used)?;
                }
                i
            }
            None => {
                let cursor = Cursor::seek(&self.state, court, &target, used)?;
                if self.cursors.len() < CURSORS_MAX {
                    self.cursors.push(cursor);
                    self.cursors.len() - 1
                } else {
                    let oldest = (0..self.cursors.len())
                        .min_by_key(|i| self.cursors[*i].used)
                        .unwrap_or(0);
                    self.cursors[oldest] = cursor;
                    oldest
                }
            }
        };
        match &self.cursors[found].at {
            Some((key, value)) if key.starts_with(prefix) => decode(value).map(Some),
            _ => Ok(None),
        }
    }
}
