//! The runs: a case-flow or bank reconciliation over the ledger as of one journal
//! sequence, fixed when the run starts. Every ledger fact is read "at or before" that
//! sequence (a case's facts line, its closing entry, an unidentified receipt's
//! settling entry), and entries after it are ignored, so writes that go on during a
//! run never change its answer. No journal reads per row: each case-flow row costs
//! two point reads and one short range read in sled.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use crate::domain::{BankLineKind, CaseNumber, CourtCode, Date, Fen, SpecialAccountState};
use crate::ledger::{Fault, State};
use crate::store::SledState;

use super::bank::{self, Recorded};
use super::case_flow::{self, LedgerCase, RawRow};
use super::report::{Discrepancy, Kind, Totals};
use super::Limits;

/// The cases of the ledger a run has seen, one bit per case: the special account's
/// serial and the case's serial under it, from the virtual account number. Its size
/// follows the number of cases in the ledger (an eighth of a byte each), never the
/// number of rows.
#[derive(Debug, Default)]
pub struct SeenCases {
    bits: HashMap<u32, Vec<u64>>,
}

impl SeenCases {
    /// Marks the case; false if it was marked before.
    pub fn insert(&mut self, (special, case): (u32, u64)) -> bool {
        let words = self.bits.entry(special).or_default();
        let (word, bit) = ((case / 64) as usize, case % 64);
        if words.len() <= word {
            words.resize(word + 1, 0);
        }
        let was = words[word] & (1 << bit) != 0;
        words[word] |= 1 << bit;
        !was
    }

    pub fn contains(&self, (special, case): (u32, u64)) -> bool {
        let (word, bit) = ((case / 64) as usize, case % 64);
        self.bits
            .get(&special)
            .and_then(|w| w.get(word))
            .is_some_and(|w| w & (1 << bit) != 0)
    }

    pub fn bytes(&self) -> usize {
        self.bits.values().map(|w| w.len() * 8).sum()
    }
}

/// The ledger as of `sequence`.
#[derive(Clone)]
pub struct Snapshot {
    pub reads: SledState,
    pub sequence: u64,
}

impl Snapshot {
    /// The case as of the snapshot, if it existed then: one range read.
    pub fn case_by_number(&self, number: &CaseNumber) -> Result<Option<LedgerCase>, Fault> {
        let Some(facts) = self.reads.case_facts_at(number, self.sequence)? else {
            return Ok(None);
        };
        Ok(Some(LedgerCase {
            case_number: number.clone(),
            van_serials: facts.van_serials,
            target: facts.target,
            balances: facts.balances,
            clock: facts.clock,
            // The facts line at or before the snapshot says closed only if the closing
            // entry was at or before it too.
            closed: facts.closed.filter(|(_, seq)| *seq <= self.sequence),
        }))
    }
}

/// What a case-flow run reports at its end.
#[derive(Debug, Clone, Default)]
pub struct CaseFlowSummary {
    pub sequence: u64,
    pub as_of: Option<Date>,
    pub limits: Limits,
    pub rows: u64,
    pub invalid_rows: u64,
    pub total: Totals,
    pub courts: BTreeMap<String, Totals>,
    /// Memory held by the seen-set, to show it follows cases and not rows.
    pub seen_bytes: usize,
}

/// One case-flow reconciliation in progress.
pub struct CaseFlowRun {
    snap: Snapshot,
    as_of: Date,
    limits: Limits,
    scope: Option<CourtCode>,
    /// Rows outside `scope` are refused (for callers who may not read every court).
    restricted: bool,
    courts: BTreeSet<CourtCode>,
    seen: SeenCases,
    summary: CaseFlowSummary,
    position: u64,
}

impl CaseFlowRun {
    pub fn new(snap: Snapshot, as_of: Date, limits: Limits, scope: Option<CourtCode>) -> Self {
        CaseFlowRun {
            summary: CaseFlowSummary {
                sequence: snap.sequence,
                as_of: Some(as_of),
                limits,
                ..CaseFlowSummary::default()
            },
            snap,
            as_of,
            limits,
            scope,
            restricted: false,
            courts: BTreeSet::new(),
            seen: SeenCases::default(),
            position: 0,
        }
    }

    /// Refuses rows whose court `scope` does not cover, as INVALID_ROW.
    pub fn restricted_to_scope(mut self, restricted: bool) -> Self {
        self.restricted = restricted;
        self
    }

    fn emit(summary: &mut CaseFlowSummary, out: &mut impl FnMut(Discrepancy), d: Discrepancy) {
        if d.kind == Kind::InvalidRow {
            summary.invalid_rows += 1;
        }
        summary.total.count(d.kind);
        match summary.courts.get_mut(d.court_code.as_str()) {
            Some(t) => t.count(d.kind),
            None => {
                let mut t = Totals::default();
                t.count(d.kind);
                summary.courts.insert(d.court_code.clone(), t);
            }
        }
        out(d);
    }

    /// Reconciles one row. A bad row becomes INVALID_ROW and the run goes on; only
    /// a fault of the store stops it.
    pub fn row(
        &mut self,
        raw: &mut RawRow,
        out: &mut impl FnMut(Discrepancy),
    ) -> Result<(), Fault> {
        self.position += 1;
        if raw.line == 0 {
            raw.line = self.position;
        }
        self.summary.rows += 1;
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        let row = match case_flow::parse_row(raw) {
            Ok(row) => row,
            Err(reason) => {
                // Counted under the court only if the court code is valid, so that
                // garbage cannot make the per-court table grow with the rows.
                let mut d = case_flow::invalid_row(raw, &reason);
                if CourtCode::parse(&d.court_code).is_err() {
                    d.court_code.clear();
                }
                emit(d);
                return Ok(());
            }
        };
        if self.restricted && !self.scope.as_ref().is_some_and(|s| s.covers(&row.court)) {
            emit(case_flow::invalid_row(
                raw,
                "the row's court is outside header.court_scope",
            ));
            return Ok(());
        }
        let ledger = self.snap.case_by_number(&row.case_number)?;
        if let Some(l) = &ledger {
            if !self.seen.insert(l.van_serials) {
                emit(case_flow::invalid_row(
                    raw,
                    &format!(
                        "case {} appears more than once in the case-flow data; only its first row was reconciled",
                        row.case_number
                    ),
                ));
                return Ok(());
            }
        }
        if !self.courts.contains(&row.court) {
            self.courts.insert(row.court.clone());
        }
        case_flow::check_row(&row, ledger.as_ref(), self.as_of, &self.limits, &mut emit);
        // Looked up by &str first: allocating the key for every row costs more than
        // the rest of the bookkeeping.
        if !summary.courts.contains_key(row.court.as_str()) {
            summary
                .courts
                .insert(row.court.to_string(), Totals::default());
        }
        if let Some(totals) = summary.courts.get_mut(row.court.as_str()) {
            case_flow::add_to_totals(totals, &row, ledger.as_ref());
        }
        case_flow::add_to_totals(&mut summary.total, &row, ledger.as_ref());
        Ok(())
    }

    /// After the last row: the ledger's accounts of the courts covered that the data
    /// did not list, and their overdue money. One pass over the case accounts.
    pub fn finish(mut self, out: &mut impl FnMut(Discrepancy)) -> Result<CaseFlowSummary, Fault> {
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        if self.scope.is_some() || !self.courts.is_empty() {
            let reads = &self.snap.reads;
            let sequence = self.snap.sequence;
            // Facts come grouped by court: decide coverage once per court.
            let mut last_court = (String::new(), false);
            reads.for_each_case_facts(sequence, |court, facts| {
                if last_court.0 != court {
                    let covered = CourtCode::parse(court).is_ok_and(|c| {
                        self.scope.as_ref().is_some_and(|s| s.covers(&c))
                            || self.courts.contains(&c)
                    });
                    last_court = (court.to_owned(), covered);
                }
                if !last_court.1 || self.seen.contains(facts.van_serials) {
                    return Ok(());
                }
                // Rare: an account the data did not list. Its number, through its
                // virtual account number.
                let (special, serial) = facts.van_serials;
                let van = crate::domain::VirtualAccountNumber::issue(special, serial);
                let id = reads
                    .case_by_van(&van)?
                    .ok_or_else(|| Fault(format!("facts name unknown account {van}")))?;
                let case = reads
                    .case(id)?
                    .ok_or_else(|| Fault(format!("case index names missing case {id}")))?;
                let ledger = LedgerCase {
                    case_number: case.case_number,
                    van_serials: facts.van_serials,
                    target: facts.target,
                    balances: facts.balances,
                    clock: facts.clock,
                    closed: facts.closed.filter(|(_, seq)| *seq <= sequence),
                };
                case_flow::missing_in_case_flow(&ledger, &mut emit);
                case_flow::overdue(&ledger, self.as_of, &self.limits, &mut emit);
                Ok(())
            })?;
        }
        self.summary.seen_bytes = self.seen.bytes();
        Ok(self.summary)
    }
}

/// What a bank run reports at its end.
#[derive(Debug, Clone, Default)]
pub struct BankSummary {
    pub sequence: u64,
    pub special_id: Uuid,
    pub court: String,
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub limits: Limits,
    pub rows: u64,
    pub invalid_rows: u64,
    pub matched: u64,
    pub total: Totals,
    pub statement_credits: i128,
    pub statement_debits: i128,
    pub statement_opening: Fen,
    pub statement_closing: Fen,
    pub ledger_opening: i128,
    pub ledger_closing: i128,
    pub ledger_bank_balance: i128,
    pub ledger_cases_balance: i128,
    pub ledger_suspense_balance: i128,
}

/// One bank statement reconciliation in progress. It keeps the statement's bank
/// references and the entries they matched: a statement is one account's period,
/// so this is bounded by the statement, not by the ledger.
pub struct BankRun {
    snap: Snapshot,
    special: SpecialAccountState,
    period: bank::Period,
    refs: HashSet<String>,
    matched: HashSet<u64>,
    summary: BankSummary,
    position: u64,
}

impl BankRun {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        snap: Snapshot,
        special: SpecialAccountState,
        from: Date,
        to: Date,
        opening: Fen,
        closing: Fen,
        limits: Limits,
    ) -> Self {
        let mut account_numbers: Vec<String> = special
            .registrations
            .iter()
            .filter(|r| r.sequence <= snap.sequence)
            .map(|r| r.bank.account_number.to_string())
            .collect();
        account_numbers.dedup();
        BankRun {
            summary: BankSummary {
                sequence: snap.sequence,
                special_id: special.id,
                court: special.court.to_string(),
                from: Some(from),
                to: Some(to),
                limits,
                statement_opening: opening,
                statement_closing: closing,
                ..BankSummary::default()
            },
            snap,
            special,
            period: bank::Period {
                from,
                to,
                account_numbers,
            },
            refs: HashSet::new(),
            matched: HashSet::new(),
            position: 0,
        }
    }

    fn emit(summary: &mut BankSummary, out: &mut impl FnMut(Discrepancy), d: Discrepancy) {
        if d.kind == Kind::InvalidRow {
            summary.invalid_rows += 1;
        }
        summary.total.count(d.kind);
        out(d);
    }

    fn recorded(&self, bank_ref: &crate::domain::BankRef) -> Result<Recorded, Fault> {
        let reads = &self.snap.reads;
        let Some(seq) = reads.bank_ref(self.special.id, bank_ref)? else {
            return Ok(Recorded::Nothing);
        };
        if seq > self.snap.sequence {
            return Ok(Recorded::AfterSnapshot(seq));
        }
        if let Some(by) = reads.reversed_by(seq)? {
            if by <= self.snap.sequence {
                return Ok(Recorded::Reversed { seq, by });
            }
        }
        let line = reads
            .get(&crate::store::keys::bank_line(self.special.id, seq))?
            .ok_or_else(|| Fault(format!("entry {seq} has a bank reference but no bank line")))?;
        Ok(Recorded::Line { seq, line })
    }

    pub fn row(
        &mut self,
        raw: &mut bank::RawLine,
        out: &mut impl FnMut(Discrepancy),
    ) -> Result<(), Fault> {
        self.position += 1;
        if raw.line == 0 {
            raw.line = self.position;
        }
        self.summary.rows += 1;
        let court = self.summary.court.clone();
        let line = match bank::parse_line(raw, &self.period) {
            Ok(l) if !self.refs.insert(l.bank_ref.to_string()) => Err(format!(
                "bank_ref {} appears more than once in the statement",
                l.bank_ref
            )),
            other => other,
        };
        let summary = &mut self.summary;
        let line = match line {
            Ok(l) => l,
            Err(reason) => {
                Self::emit(summary, out, bank::invalid_line(raw, &reason).court(court));
                return Ok(());
            }
        };
        if line.amount.0 >= 0 {
            summary.statement_credits += i128::from(line.amount.0);
        } else {
            summary.statement_debits -= i128::from(line.amount.0);
        }
        let recorded = self.recorded(&line.bank_ref)?;
        let summary = &mut self.summary;
        if bank::check_line(&line, &recorded, &court, &mut |d| {
            Self::emit(summary, out, d)
        }) {
            summary.matched += 1;
            if let Recorded::Line { seq, .. } = recorded {
                self.matched.insert(seq);
            }
        }
        Ok(())
    }

    /// After the last line: the ledger's bank lines of the period the statement did
    /// not show, the balances, the three-way check, and aged suspense.
    pub fn finish(mut self, out: &mut impl FnMut(Discrepancy)) -> Result<BankSummary, Fault> {
        let court = self.summary.court.clone();
        let limits = self.summary.limits;
        let (from, to) = (self.period.from, self.period.to);
        let reads = self.snap.reads.clone();
        let special_id = self.special.id;
        let seq_max = self.snap.sequence;
        let mut reversed: HashSet<u64> = HashSet::new();
        let mut pending = Vec::new();
        let (mut opening, mut closing, mut bank) = (0i128, 0i128, 0i128);
        for item in reads.bank_lines(special_id, seq_max) {
            let (seq, line) = item?;
            let amount = i128::from(line.amount.0);
            bank += amount;
            if line.date < from {
                opening += amount;
            }
            if line.date <= to {
                closing += amount;
            }
            if let BankLineKind::Reversal { reversed: r } = line.kind {
                reversed.insert(r);
                continue;
            }
            if line.date >= from && line.date <= to && !self.matched.contains(&seq) {
                pending.push((seq, line));
            }
        }
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        for (seq, line) in pending {
            // A reversed entry and its reversal net out: the bank never saw either.
            if !reversed.contains(&seq) {
                emit(bank::not_in_bank(seq, &line, &court));
            }
        }
        let opening_fen = Fen(i64::try_from(opening).unwrap_or(i64::MAX));
        let closing_fen = Fen(i64::try_from(closing).unwrap_or(i64::MAX));
        let statement = (
            self.summary.statement_opening,
            self.summary.statement_closing,
        );
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        if let Some(d) = bank::balance_mismatch("opening", from, statement.0, opening_fen, &court) {
            emit(d);
        }
        if let Some(d) = bank::balance_mismatch("closing", to, statement.1, closing_fen, &court) {
            emit(d);
        }
        // The three-way check at the snapshot: bank = Σ cases + suspense.
        // A case's virtual account number begins with its special account's serial,
        // so the compact facts lines are enough to sum the account's cases.
        let mut cases = 0i128;
        let serial = self.special.serial;
        reads.for_each_case_facts(seq_max, |_, facts| {
            if facts.van_serials.0 == serial {
                cases += i128::from(facts.balances.balance().0);
            }
            Ok(())
        })?;
        let mut suspense = 0i128;
        for u in reads.scan_unidentified(special_id) {
            let u = u?;
            if !u.in_suspense_at(seq_max) {
                continue;
            }
            suspense += i128::from(u.amount.fen().0);
            let age = to.days() - u.value_date.days();
            if age > i64::from(limits.suspense_age_days) {
                emit(
                    Discrepancy::new(
                        Kind::SuspenseAged,
                        crate::reconcile::Severity::Warning,
                        format!(
                            "Unidentified receipt {} of {} from {} (reference {}, value date {}) has waited in suspense {age} days on {to}; it should be assigned to its case or returned within {} days.",
                            u.id,
                            u.amount,
                            u.payer_name,
                            u.bank_ref,
                            u.value_date,
                            limits.suspense_age_days
                        ),
                    )
                    .court(court.as_str())
                    .bank_ref(u.bank_ref.as_str())
                    .values(
                        format!("settled within {} days", limits.suspense_age_days),
                        format!("{age} days in suspense"),
                    )
                    .sequence(u.recorded_sequence),
                );
            }
        }
        if bank != cases + suspense {
            emit(
                Discrepancy::new(
                    Kind::BankBalanceMismatch,
                    crate::reconcile::Severity::Error,
                    format!(
                        "The ledger's own books disagree at entry {seq_max}: the bank balance {} is not the cases' {} plus suspense {}.",
                        super::report::money(bank),
                        super::report::money(cases),
                        super::report::money(suspense)
                    ),
                )
                .court(court.as_str())
                .values(super::report::money(cases + suspense), super::report::money(bank)),
            );
        }
        let s = &mut self.summary;
        s.ledger_opening = opening;
        s.ledger_closing = closing;
        s.ledger_bank_balance = bank;
        s.ledger_cases_balance = cases;
        s.ledger_suspense_balance = suspense;
        Ok(self.summary)
    }
}
