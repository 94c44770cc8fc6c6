//! The runs: a case-flow or bank reconciliation over the ledger as of one journal
//! sequence, fixed when the run starts. Every ledger fact is read "at or before" that
//! sequence (a case's facts line, its closing entry, an unidentified receipt's
//! settling entry), and entries after it are ignored, so writes that go on during a
//! run never change its answer. No journal reads per row: each case-flow row costs one
//! read of its case's facts line, mostly a step of a cursor kept per court
//! (`store::FactsReader`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use crate::domain::{
    BankLineKind, CaseFacts, CaseNumber, CourtCode, Date, Fen, SpecialAccountState,
};
use crate::ledger::{Fault, State};
use crate::store::{FactsReader, SledState};

use super::bank::{self, Recorded};
use super::case_flow::{self, LedgerCase, RawRow, Row};
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

    /// How many of the case serials `1..next` of a special account are not marked.
    pub fn unseen(&self, special: u32, next: u64) -> u64 {
        let issued = next.saturating_sub(1);
        let words = self.bits.get(&special).map_or(&[][..], |w| w.as_slice());
        // Serials below 1 and from `next` on are not issued: count only marks within.
        let marked: u64 = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let first = i as u64 * 64;
                let mut w = *w;
                if first == 0 {
                    w &= !1;
                }
                if first + 64 > next {
                    let keep = next.saturating_sub(first);
                    w &= if keep >= 64 {
                        u64::MAX
                    } else {
                        (1u64 << keep) - 1
                    };
                }
                u64::from(w.count_ones())
            })
            .sum();
        issued - marked.min(issued)
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

fn ledger_case(case_number: CaseNumber, facts: CaseFacts, sequence: u64) -> LedgerCase {
    LedgerCase {
        case_number,
        van_serials: facts.van_serials,
        target: facts.target,
        balances: facts.balances,
        clock: facts.clock,
        // The facts line at or before the snapshot says closed only if the closing
        // entry was at or before it too.
        closed: facts.closed.filter(|(_, seq)| *seq <= sequence),
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

/// Rows of one message below which a run does not hand half of them to a second
/// thread: the thread would cost more than it saves.
pub const PARALLEL_ROWS_MIN: usize = 64;

/// What a run decides about a row without knowing the rows before it.
#[derive(Clone)]
struct Rules {
    as_of: Date,
    limits: Limits,
    scope: Option<CourtCode>,
    /// Rows outside `scope` are refused (for callers who may not read every court).
    restricted: bool,
}

/// A row as far as it can be taken without the run's state: the order-dependent
/// rest (the seen-set, totals, what is sent) is [`CaseFlowRun::commit`]'s.
// Most rows are `Checked`, and they wait in vectors kept from message to message:
// boxing the large variant would allocate once per row to save nothing.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    /// INVALID_ROW, whatever came before.
    Invalid(Discrepancy),
    Checked(Checked),
}

struct Checked {
    /// The row's line, case number and court code as given, for the INVALID_ROW of a
    /// case that appeared before; the rest of the raw row is not kept.
    named: (u64, String, String),
    row: Row,
    ledger: Option<LedgerCase>,
    /// What the rules found, sent only if the case did not appear before.
    found: Vec<Discrepancy>,
}

impl Rules {
    fn prepare(&self, facts: &mut FactsReader, raw: &mut RawRow) -> Result<Prepared, Fault> {
        let row = match case_flow::parse_row(raw) {
            Ok(row) => row,
            Err(reason) => {
                // Counted under the court only if the court code is valid, so that
                // garbage cannot make the per-court table grow with the rows.
                let mut d = case_flow::invalid_row(raw, &reason);
                if CourtCode::parse(&d.court_code).is_err() {
                    d.court_code.clear();
                }
                return Ok(Prepared::Invalid(d));
            }
        };
        if self.restricted && !self.scope.as_ref().is_some_and(|s| s.covers(&row.court)) {
            return Ok(Prepared::Invalid(case_flow::invalid_row(
                raw,
                "the row's court is outside header.court_scope",
            )));
        }
        let ledger = facts
            .case_facts(&row.case_number)?
            .map(|f| ledger_case(row.case_number.clone(), f, facts.sequence()));
        let mut found = Vec::new();
        case_flow::check_row(&row, ledger.as_ref(), self.as_of, &self.limits, &mut |d| {
            found.push(d)
        });
        let named = (
            raw.line,
            std::mem::take(&mut raw.case_number),
            std::mem::take(&mut raw.court_code),
        );
        Ok(Prepared::Checked(Checked {
            named,
            row,
            ledger,
            found,
        }))
    }

    /// Prepares `raws` in order into `out`, up to the first fault of the store: the
    /// run stops there, so the rows after it do not matter.
    fn prepare_all(
        &self,
        facts: &mut FactsReader,
        raws: &mut [RawRow],
        out: &mut Vec<Result<Prepared, Fault>>,
    ) {
        for raw in raws {
            let prepared = self.prepare(facts, raw);
            let failed = prepared.is_err();
            out.push(prepared);
            if failed {
                break;
            }
        }
    }
}

/// One case-flow reconciliation in progress.
pub struct CaseFlowRun {
    snap: Snapshot,
    rules: Rules,
    /// Facts for this thread's rows, and for the helper's: each keeps its own place.
    facts: FactsReader,
    helper_facts: FactsReader,
    /// Whether a message's rows may be split with a second thread.
    parallel: bool,
    /// What [`CaseFlowRun::rows`] prepared on each thread, empty between messages.
    prepared: Vec<Result<Prepared, Fault>>,
    helper_prepared: Vec<Result<Prepared, Fault>>,
    courts: BTreeSet<CourtCode>,
    seen: SeenCases,
    /// The cases named by rows that the ledger has no account for, up to
    /// [`UNKNOWN_CASES_TRACKED_MAX`]: the bitmap above only covers the ledger's own.
    unknown: HashSet<CaseNumber>,
    summary: CaseFlowSummary,
    position: u64,
}

/// How many cases without a ledger account a case-flow run remembers, to find their
/// repeated rows: a few MiB. Past it, memory stays bounded, and a repeated row of a
/// case not remembered is reported as missing from the ledger once more.
pub const UNKNOWN_CASES_TRACKED_MAX: usize = 100_000;

impl CaseFlowRun {
    pub fn new(snap: Snapshot, as_of: Date, limits: Limits, scope: Option<CourtCode>) -> Self {
        CaseFlowRun {
            summary: CaseFlowSummary {
                sequence: snap.sequence,
                as_of: Some(as_of),
                limits,
                ..CaseFlowSummary::default()
            },
            rules: Rules {
                as_of,
                limits,
                scope,
                restricted: false,
            },
            facts: snap.reads.facts_reader(snap.sequence),
            helper_facts: snap.reads.facts_reader(snap.sequence),
            parallel: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            prepared: Vec::new(),
            helper_prepared: Vec::new(),
            snap,
            courts: BTreeSet::new(),
            seen: SeenCases::default(),
            unknown: HashSet::new(),
            position: 0,
        }
    }

    /// Refuses rows whose court `scope` does not cover, as INVALID_ROW.
    pub fn restricted_to_scope(mut self, restricted: bool) -> Self {
        self.rules.restricted = restricted;
        self
    }

    /// Whether [`CaseFlowRun::rows`] may split a message's rows with a second thread
    /// (by default when the machine has more than one).
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
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

    fn number(&mut self, raw: &mut RawRow) {
        self.position += 1;
        if raw.line == 0 {
            raw.line = self.position;
        }
    }

    /// Reconciles one row. A bad row becomes INVALID_ROW and the run goes on; only
    /// a fault of the store stops it.
    pub fn row(
        &mut self,
        raw: &mut RawRow,
        out: &mut impl FnMut(Discrepancy),
    ) -> Result<(), Fault> {
        self.number(raw);
        let prepared = self.rules.prepare(&mut self.facts, raw)?;
        self.commit(prepared, out);
        Ok(())
    }

    /// Reconciles a message's rows in their order, exactly as [`CaseFlowRun::row`]
    /// one by one would. The part of each row that does not depend on the rows before
    /// it (validation, the ledger's facts, the rules) runs for the second half of a
    /// large message on another thread; what does (the seen-set, totals, sending) runs
    /// here in row order. `out` returns false once nobody listens: the run then stops
    /// sending, after this message at the latest.
    pub fn rows(
        &mut self,
        mut raws: Vec<RawRow>,
        out: &mut impl FnMut(Discrepancy) -> bool,
    ) -> Result<(), Fault> {
        for raw in &mut raws {
            self.number(raw);
        }
        // Kept from message to message: a message's worth of prepared rows is then
        // written into memory already touched, not into fresh pages.
        let mut first = std::mem::take(&mut self.prepared);
        let mut second = std::mem::take(&mut self.helper_prepared);
        if self.parallel && raws.len() >= PARALLEL_ROWS_MIN {
            let half = raws.len() / 2;
            let (mine, theirs) = raws.split_at_mut(half);
            let (rules, facts, helper_facts) =
                (&self.rules, &mut self.facts, &mut self.helper_facts);
            let helper_out = &mut second;
            let started = std::thread::scope(|s| {
                let helper = std::thread::Builder::new()
                    .name("reconcile-rows".into())
                    .spawn_scoped(s, || rules.prepare_all(helper_facts, theirs, helper_out));
                rules.prepare_all(facts, mine, &mut first);
                match helper {
                    Ok(helper) => {
                        Some(helper.join().map_err(|_| {
                            Fault("a reconciliation thread stopped unexpectedly".into())
                        }))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a reconciliation thread; checking the whole message on one");
                        None
                    }
                }
            });
            match started {
                Some(Ok(())) => {}
                Some(Err(fault)) => {
                    second.clear();
                    second.push(Err(fault));
                }
                // The thread is a speed-up, not a need: without it, this one does both.
                None => {
                    second.clear();
                    let theirs = raws.get_mut(half..).unwrap_or_default();
                    self.rules
                        .prepare_all(&mut self.helper_facts, theirs, &mut second);
                }
            }
        } else {
            self.rules
                .prepare_all(&mut self.facts, &mut raws, &mut first);
        }
        let mut listening = true;
        let mut outcome = Ok(());
        for p in first.drain(..).chain(second.drain(..)) {
            match p {
                Ok(p) if listening => self.commit(p, &mut |d| listening = out(d)),
                Ok(_) => {}
                Err(fault) => {
                    outcome = Err(fault);
                    break;
                }
            }
        }
        first.clear();
        second.clear();
        self.prepared = first;
        self.helper_prepared = second;
        outcome
    }

    fn commit(&mut self, prepared: Prepared, out: &mut impl FnMut(Discrepancy)) {
        self.summary.rows += 1;
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        let Checked {
            named,
            row,
            ledger,
            found,
        } = match prepared {
            Prepared::Invalid(d) => return emit(d),
            Prepared::Checked(checked) => checked,
        };
        let repeated = match &ledger {
            Some(l) => !self.seen.insert(l.van_serials),
            None if self.unknown.contains(&row.case_number) => true,
            None => {
                if self.unknown.len() < UNKNOWN_CASES_TRACKED_MAX {
                    self.unknown.insert(row.case_number.clone());
                }
                false
            }
        };
        if repeated {
            let (line, case_number, court_code) = named;
            let raw = RawRow {
                line,
                case_number,
                court_code,
                ..RawRow::default()
            };
            emit(case_flow::invalid_row(
                &raw,
                &format!(
                    "case {} appears more than once in the case-flow data; only its first row was reconciled",
                    row.case_number
                ),
            ));
            return;
        }
        if !self.courts.contains(&row.court) {
            self.courts.insert(row.court.clone());
        }
        for d in found {
            emit(d);
        }
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
    }

    /// After the last row: the ledger's accounts of the courts covered that the data
    /// did not list, and their overdue money, in the order of their facts keys.
    pub fn finish(mut self, out: &mut impl FnMut(Discrepancy)) -> Result<CaseFlowSummary, Fault> {
        let covers = Coverage {
            scope: self.rules.scope.as_ref(),
            courts: &self.courts,
        };
        if covers.scope.is_some() || !covers.courts.is_empty() {
            let (rules, seen, snap) = (&self.rules, &self.seen, &self.snap);
            let summary = &mut self.summary;
            let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
            let mut report = |ledger: &LedgerCase| {
                case_flow::missing_in_case_flow(ledger, &mut emit);
                case_flow::overdue(ledger, rules.as_of, &rules.limits, &mut emit);
            };
            match unseen_by_serial(snap, seen, &covers)? {
                Some(missing) => missing.iter().for_each(&mut report),
                None => unseen_by_scan(snap, seen, &covers, |l| report(&l))?,
            }
        }
        self.summary.seen_bytes = self.seen.bytes();
        Ok(self.summary)
    }
}

/// Holes in the seen-set beyond which finding the unlisted accounts by their serials
/// costs more than one pass over every case's facts: a hole costs three point reads,
/// a case in the pass less than one.
const HOLES_PER_SERIAL_MAX: u64 = 16;

/// Which courts' cases a run expects to see.
struct Coverage<'a> {
    scope: Option<&'a CourtCode>,
    courts: &'a BTreeSet<CourtCode>,
}

impl Coverage<'_> {
    /// The header's scope covers the court, or a row named it.
    fn covers(&self, court: &CourtCode) -> bool {
        self.scope.is_some_and(|s| s.covers(court)) || self.courts.contains(court)
    }

    /// Whether a special account of `court` may hold a covered court's cases: it
    /// holds cases of the courts its own code covers.
    fn may_hold(&self, court: &CourtCode) -> bool {
        court.is_supreme()
            || self
                .scope
                .is_some_and(|s| s.covers(court) || court.covers(s))
            || self.courts.iter().any(|c| court.covers(c))
    }
}

/// The accounts not listed, found from the holes in the seen-set: every case serial
/// that a special account which may hold a covered court's cases has issued and no
/// row named. A few point reads each instead of a pass over every case's facts, so
/// only while they are few: `None` when there is more than one hole in
/// [`HOLES_PER_SERIAL_MAX`] serials. At most that share of the ledger's cases is held,
/// to give them in the pass's order (their facts keys').
fn unseen_by_serial(
    snap: &Snapshot,
    seen: &SeenCases,
    covers: &Coverage,
) -> Result<Option<Vec<LedgerCase>>, Fault> {
    let reads = &snap.reads;
    let candidates: Vec<(u32, u64)> = reads
        .list_specials("", None, usize::MAX)?
        .into_iter()
        .filter(|(_, s)| covers.may_hold(&s.court))
        .map(|(_, s)| (s.serial, s.next_case_serial.max(1)))
        .collect();
    let issued: u64 = candidates.iter().map(|(_, next)| next - 1).sum();
    let holes: u64 = candidates
        .iter()
        .map(|(special, next)| seen.unseen(*special, *next))
        .sum();
    if holes.saturating_mul(HOLES_PER_SERIAL_MAX) > issued {
        return Ok(None);
    }
    let mut missing = Vec::new();
    for (special, next) in candidates {
        for serial in 1..next {
            if seen.contains((special, serial)) {
                continue;
            }
            // The special account was read as it is now, not as of the snapshot: a
            // serial whose number is not indexed yet belongs to an account being opened
            // right now (with sled, a batch's special account is written before its
            // index), so after the snapshot, where the facts check below would drop it.
            let Some(number) = indexed_case_number(reads, (special, serial))? else {
                continue;
            };
            if !covers.covers(number.court()) {
                continue;
            }
            // None: the account was opened after the snapshot.
            if let Some(facts) = reads.case_facts_at(&number, snap.sequence)? {
                missing.push(ledger_case(number, facts, snap.sequence));
            }
        }
    }
    missing.sort_by_cached_key(|l| l.case_number.ordered_key());
    Ok(Some(missing))
}

/// The accounts not listed, one at a time, from one pass over every case's facts.
fn unseen_by_scan(
    snap: &Snapshot,
    seen: &SeenCases,
    covers: &Coverage,
    mut found: impl FnMut(LedgerCase),
) -> Result<(), Fault> {
    let reads = &snap.reads;
    let sequence = snap.sequence;
    // Facts come grouped by court: decide coverage once per court.
    let mut last_court = (String::new(), false);
    reads.for_each_case_facts(sequence, |court, facts| {
        if last_court.0 != court {
            let covered = CourtCode::parse(court).is_ok_and(|c| covers.covers(&c));
            last_court = (court.to_owned(), covered);
        }
        if !last_court.1 || seen.contains(facts.van_serials) {
            return Ok(());
        }
        // Rare: an account the data did not list.
        let number = case_number_of(reads, facts.van_serials)?;
        found(ledger_case(number, facts, sequence));
        Ok(())
    })
}

/// The case number of the account with these serials (special account, case), through
/// its virtual account number: every account with facts as of a snapshot has one, so
/// a gap is a fault.
fn case_number_of(reads: &SledState, serials: (u32, u64)) -> Result<CaseNumber, Fault> {
    indexed_case_number(reads, serials)?.ok_or_else(|| {
        let van = crate::domain::VirtualAccountNumber::issue(serials.0, serials.1);
        Fault(format!("no case account has the number {van}"))
    })
}

/// The case number of the account with these serials, if its number is indexed.
fn indexed_case_number(
    reads: &SledState,
    (special, serial): (u32, u64),
) -> Result<Option<CaseNumber>, Fault> {
    let van = crate::domain::VirtualAccountNumber::issue(special, serial);
    let Some(id) = reads.case_by_van(&van)? else {
        return Ok(None);
    };
    let case = reads
        .case(id)?
        .ok_or_else(|| Fault(format!("case index names missing case {id}")))?;
    Ok(Some(case.case_number))
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
        if let Some(by) = self.undone_by(seq)? {
            return Ok(Recorded::Reversed { seq, by });
        }
        let line = reads
            .bank_line(self.special.id, seq)?
            .ok_or_else(|| Fault(format!("entry {seq} has a bank reference but no bank line")))?;
        Ok(Recorded::Line { seq, line })
    }

    /// The reversal that leaves entry `seq` undone as of the snapshot, if one does. A
    /// reversal may itself be reversed (to undo a mistaken correction), which puts the
    /// entry back in force: the chain is followed, as the ledger's own rules do.
    fn undone_by(&self, seq: u64) -> Result<Option<u64>, Fault> {
        let mut current = seq;
        let mut undone_by = None;
        for _ in 0..crate::ledger::REVERSAL_CHAIN_MAX {
            match self.snap.reads.reversed_by(current)? {
                Some(by) if by <= self.snap.sequence => {
                    undone_by = match undone_by {
                        None => Some(by),
                        Some(_) => None,
                    };
                    current = by;
                }
                _ => break,
            }
        }
        Ok(undone_by)
    }

    /// The day a reversal's bank line counts on: that of the line it reverses, followed
    /// down to the receipt, so that an entry, its reversal and the reversal's reversal
    /// all fall on the receipt's value date. (A reversal of a reversal is stored with
    /// the reversed reversal's recording date, which is not the bank's day.)
    fn reversal_date(&self, first: u64) -> Result<Date, Fault> {
        let mut reversed = first;
        for _ in 0..crate::ledger::REVERSAL_CHAIN_MAX {
            let line = self
                .snap
                .reads
                .bank_line(self.special.id, reversed)?
                .ok_or_else(|| {
                    Fault(format!(
                        "a reversal's bank line names entry {reversed}, which has none"
                    ))
                })?;
            match line.kind {
                BankLineKind::Reversal { reversed: r } => reversed = r,
                _ => return Ok(line.date),
            }
        }
        Err(Fault(format!(
            "a chain of reversals from entry {first} is longer than {}",
            crate::ledger::REVERSAL_CHAIN_MAX
        )))
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
        let mut pending = Vec::new();
        let (mut opening, mut closing, mut bank) = (0i128, 0i128, 0i128);
        for item in reads.bank_lines(special_id, seq_max) {
            let (seq, line) = item?;
            let amount = i128::from(line.amount.0);
            bank += amount;
            let date = match line.kind {
                BankLineKind::Reversal { reversed } => self.reversal_date(reversed)?,
                _ => line.date,
            };
            if date < from {
                opening += amount;
            }
            if date <= to {
                closing += amount;
            }
            if matches!(line.kind, BankLineKind::Reversal { .. }) {
                continue;
            }
            if line.date >= from && line.date <= to && !self.matched.contains(&seq) {
                pending.push((seq, line));
            }
        }
        let mut undone = Vec::with_capacity(pending.len());
        for (seq, _) in &pending {
            undone.push(self.undone_by(*seq)?.is_some());
        }
        let summary = &mut self.summary;
        let mut emit = |d: Discrepancy| Self::emit(summary, out, d);
        for ((seq, line), undone) in pending.into_iter().zip(undone) {
            // An entry undone by a reversal nets out with it: the bank never saw either.
            if !undone {
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

#[cfg(test)]
mod tests {
    //! The fast paths of a case-flow run against the plain ones they replace, on a
    //! real store: the facts cursor against one point read per row, a message split
    //! over two threads against one row at a time, and the unlisted accounts found by
    //! their serials against the pass over every case's facts.

    use super::*;
    use crate::domain::{
        text::len, Amount, BankDetails, BankRef, ClosureMethod, Party, RequestId, Text,
    };
    use crate::ledger::{CaseKey, Command, Request};
    use crate::store::Store;

    fn text(s: &str) -> Text {
        Text::required(s, len::NAME).expect("text")
    }

    fn number(court: &str, n: u32) -> CaseNumber {
        CaseNumber::parse(&format!("（2024）{court}执{n}号")).expect("case number")
    }

    async fn write(store: &Store, commands: Vec<Command>) -> u64 {
        let requests = commands
            .into_iter()
            .map(|command| Request {
                id: RequestId::parse(&uuid::Uuid::now_v7().to_string()).expect("id"),
                command,
                principal: None,
            })
            .collect();
        let mut last = 0;
        for reply in store.handle().write_many(requests).await.expect("written") {
            last = last.max(reply.expect("accepted").sequence);
        }
        last
    }

    /// Two basic courts with an account each, and an intermediate court whose account
    /// also holds cases of the first basic court; receipts, a closure and a second
    /// facts line for some cases. Returns the store, the case numbers, and a sequence
    /// in the middle of it all.
    async fn ledger(dir: &std::path::Path) -> (Store, Vec<CaseNumber>, u64) {
        let store = Store::open(dir).expect("store");
        for (i, court) in ["云0102", "云0103", "云01"].iter().enumerate() {
            write(
                &store,
                vec![Command::OpenSpecialAccount {
                    court: CourtCode::parse(court).expect("court"),
                    bank: BankDetails {
                        bank_name: text("中国工商银行"),
                        bank_branch: text("昆明支行"),
                        account_number: text(&format!("2502010009200{i:05}")),
                        account_name: text("执行款专户"),
                    },
                    document_ref: text("test"),
                }],
            )
            .await;
        }
        let specials = store
            .handle()
            .reads
            .list_specials("", None, 10)
            .expect("specials");
        let special = |court: &str| {
            specials
                .iter()
                .find(|(_, s)| s.court.as_str() == court)
                .map(|(_, s)| s.id)
                .expect("special")
        };
        let party = Party {
            name: text("张三"),
            payee_account: text("6222020200012345678"),
            payee_bank: text("建行"),
        };
        let mut numbers = Vec::new();
        let mut opens = Vec::new();
        for n in 1..=150u32 {
            let (court, account) = match n % 5 {
                0 | 1 => ("云0103", "云0103"),
                2 => ("云0102", "云01"),
                _ => ("云0102", "云0102"),
            };
            let case_number = number(court, n);
            numbers.push(case_number.clone());
            opens.push(Command::OpenCaseAccount {
                special_id: special(account),
                case_number,
                target: Fen(1_000_000),
                applicants: vec![party.clone()],
                respondents: vec![party.clone()],
            });
        }
        // Opened in an order unlike the numbers', so that keys and serials differ.
        opens.reverse();
        write(&store, opens).await;
        let receipt = |n: &CaseNumber, tag: &str| {
            Command::RecordReceipt(crate::ledger::Receipt {
                case: CaseKey::Number(n.clone()),
                amount: Amount::from_fen(10_000).expect("amount"),
                payer_name: text("某某公司"),
                payer_account: text("6217"),
                bank_ref: BankRef::parse(&format!("{tag}{}", n.sequence())).expect("ref"),
                value_date: Date::parse("2024-03-01").expect("date"),
            })
        };
        let early: Vec<_> = numbers.iter().step_by(3).map(|n| receipt(n, "A")).collect();
        let middle = write(&store, early).await;
        let late: Vec<_> = numbers.iter().step_by(4).map(|n| receipt(n, "B")).collect();
        write(&store, late).await;
        write(
            &store,
            vec![Command::CloseCaseAccount {
                case_number: numbers[1].clone(),
                method: ClosureMethod::Withdrawn,
                reason: text("结案"),
            }],
        )
        .await;
        (store, numbers, middle)
    }

    /// A permutation of `0..n` far from the identity.
    fn scrambled(n: usize) -> Vec<usize> {
        (0..n).map(|i| (i * 97 + 13) % n).collect()
    }

    #[tokio::test]
    async fn the_facts_cursor_answers_as_a_point_read_in_any_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut numbers, middle) = ledger(dir.path()).await;
        let reads = store.handle().reads.clone();
        // Cases the ledger never had, among and after the real ones.
        numbers.push(number("云0102", 7_000));
        numbers.push(number("云0104", 1));
        numbers.sort_by_key(|n| n.ordered_key());
        let n = numbers.len();
        let orders: Vec<Vec<usize>> = vec![
            (0..n).collect(),
            (0..n).rev().collect(),
            scrambled(n),
            // Each case twice in a row, then every third case again from the start.
            (0..n)
                .flat_map(|i| [i, i])
                .chain((0..n).step_by(3))
                .collect(),
        ];
        for sequence in [1, middle, reads.last_sequence().expect("last")] {
            for order in &orders {
                let mut reader = reads.facts_reader(sequence);
                for (k, i) in order.iter().enumerate() {
                    let expected = reads.case_facts_at(&numbers[*i], sequence).expect("read");
                    assert_eq!(
                        reader.case_facts(&numbers[*i]).expect("cursor"),
                        expected,
                        "{} as of {sequence}",
                        numbers[*i]
                    );
                    // Writes going on meanwhile add only lines after the snapshot.
                    if sequence == middle && k % 40 == 0 {
                        write(
                            &store,
                            vec![Command::RecordReceipt(crate::ledger::Receipt {
                                case: CaseKey::Number(number("云0103", 5)),
                                amount: Amount::from_fen(1).expect("amount"),
                                payer_name: text("某某公司"),
                                payer_account: text("6217"),
                                bank_ref: BankRef::parse(&format!("W{}", uuid::Uuid::now_v7()))
                                    .expect("ref"),
                                value_date: Date::parse("2024-03-02").expect("date"),
                            })],
                        )
                        .await;
                    }
                }
            }
        }
        store.close().await;
    }

    fn raw(line: u64, number: &CaseNumber, received: &str) -> RawRow {
        RawRow {
            line,
            case_number: number.as_str().to_owned(),
            court_code: number.court().as_str().to_owned(),
            filed_on: "2024-01-02".into(),
            status: "open".into(),
            received_amount: received.into(),
            disbursed_amount: "0".into(),
            ..RawRow::default()
        }
    }

    struct Outcome {
        found: Vec<Discrepancy>,
        rows: u64,
        invalid_rows: u64,
        total: Totals,
        courts: BTreeMap<String, Totals>,
    }

    fn outcome(found: Vec<Discrepancy>, s: CaseFlowSummary) -> Outcome {
        Outcome {
            found,
            rows: s.rows,
            invalid_rows: s.invalid_rows,
            total: s.total,
            courts: s.courts,
        }
    }

    #[tokio::test]
    async fn a_message_split_over_two_threads_answers_as_rows_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, numbers, middle) = ledger(dir.path()).await;
        let reads = store.handle().reads.clone();
        let mut raws = Vec::new();
        for (i, k) in scrambled(numbers.len()).into_iter().enumerate() {
            let received = if k % 7 == 0 { "1.00" } else { "100.00" };
            raws.push(raw(i as u64 + 2, &numbers[k], received));
        }
        // A case again in the second half of a message whose first half had it, a
        // case the ledger lacks, and rows that do not validate.
        let again = raws[3].clone();
        raws[120].case_number = again.case_number;
        raws[120].court_code = again.court_code;
        raws.push(raw(900, &number("云0102", 7_000), "5.00"));
        raws[40].received_amount = "1.001".into();
        raws[77].court_code = "云0111".into();
        let date = Date::parse("2024-06-01").expect("date");
        for sequence in [middle, reads.last_sequence().expect("last")] {
            let snap = || Snapshot {
                reads: reads.clone(),
                sequence,
            };
            let mut one = CaseFlowRun::new(snap(), date, Limits::default(), None).parallel(false);
            let mut one_found = Vec::new();
            for r in raws.clone() {
                one.row(&mut r.clone(), &mut |d| one_found.push(d))
                    .expect("row");
            }
            let one_summary = one.finish(&mut |d| one_found.push(d)).expect("finish");
            let mut split = CaseFlowRun::new(snap(), date, Limits::default(), None).parallel(true);
            let mut split_found = Vec::new();
            for chunk in raws.chunks(PARALLEL_ROWS_MIN * 2) {
                split
                    .rows(chunk.to_vec(), &mut |d| {
                        split_found.push(d);
                        true
                    })
                    .expect("rows");
            }
            let split_summary = split.finish(&mut |d| split_found.push(d)).expect("finish");
            let (one, split) = (
                outcome(one_found, one_summary),
                outcome(split_found, split_summary),
            );
            assert!(one.found.iter().any(|d| d.line == 122
                && d.kind == Kind::InvalidRow
                && d.found.contains("more than once")));
            assert_eq!(one.found, split.found);
            assert_eq!(
                (one.rows, one.invalid_rows, &one.total, &one.courts),
                (split.rows, split.invalid_rows, &split.total, &split.courts)
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn unlisted_accounts_by_serial_are_those_of_the_pass_over_all_facts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, numbers, middle) = ledger(dir.path()).await;
        let reads = store.handle().reads.clone();
        let date = Date::parse("2024-06-01").expect("date");
        let last = reads.last_sequence().expect("last");
        let scope = |s: &str| Some(CourtCode::parse(s).expect("court"));
        // Rows for all but a few cases (by serial: few holes), and for a third of
        // them (many holes: the serial path declines); with and without a scope.
        let nearly: Vec<RawRow> = numbers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 37 != 5)
            .map(|(i, n)| raw(i as u64 + 2, n, "0"))
            .collect();
        let third: Vec<RawRow> = nearly.iter().step_by(3).cloned().collect();
        let only = |court: &str| -> Vec<RawRow> {
            nearly
                .iter()
                .filter(|r| r.court_code == court)
                .cloned()
                .collect()
        };
        let (only_0102, only_0103) = (only("云0102"), only("云0103"));
        // 云01's account holds cases of 云0102 only, but might hold 云0103's: with
        // rows of 云0103 alone, its thirty serials are holes.
        let cases = [
            (&nearly, None, true),
            (&nearly, scope("云01"), true),
            (&only_0102, None, true),
            (&only_0103, None, false),
            (&only_0103, scope("云0102"), false),
            (&third, None, false),
            (&Vec::new(), scope("云0103"), false),
        ];
        for (rows, scope, by_serial) in cases {
            for sequence in [middle, last] {
                let snap = Snapshot {
                    reads: reads.clone(),
                    sequence,
                };
                let mut run =
                    CaseFlowRun::new(snap.clone(), date, Limits::default(), scope.clone())
                        .parallel(false);
                for r in rows {
                    run.row(&mut r.clone(), &mut |_| {}).expect("row");
                }
                let covers = Coverage {
                    scope: run.rules.scope.as_ref(),
                    courts: &run.courts,
                };
                let mut scanned = Vec::new();
                unseen_by_scan(&snap, &run.seen, &covers, |l| scanned.push(l)).expect("scan");
                let serial = unseen_by_serial(&snap, &run.seen, &covers).expect("serials");
                assert_eq!(serial.is_some(), by_serial, "{} rows", rows.len());
                if let Some(serial) = serial {
                    assert!(!scanned.is_empty());
                    assert_eq!(serial, scanned);
                }
            }
        }
        store.close().await;
    }

    /// With sled, a batch that opens a case account writes the special account (its
    /// next serial) before the new number's index. A run reading in between sees a
    /// serial with no account yet: an account opened after its snapshot, to leave out,
    /// not a damaged state to fail on.
    #[tokio::test]
    async fn a_serial_whose_account_is_being_opened_is_not_a_fault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, numbers, _) = ledger(dir.path()).await;
        let reads = store.handle().reads.clone();
        let last = reads.last_sequence().expect("last");
        let rows: Vec<RawRow> = numbers
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 37 != 5)
            .map(|(i, n)| raw(i as u64 + 2, n, "0"))
            .collect();
        let snap = Snapshot {
            reads: reads.clone(),
            sequence: last,
        };
        let mut run = CaseFlowRun::new(
            snap.clone(),
            Date::parse("2024-06-01").expect("date"),
            Limits::default(),
            None,
        )
        .parallel(false);
        for r in &rows {
            run.row(&mut r.clone(), &mut |_| {}).expect("row");
        }
        let covers = Coverage {
            scope: run.rules.scope.as_ref(),
            courts: &run.courts,
        };
        let before = unseen_by_serial(&snap, &run.seen, &covers)
            .expect("serials")
            .expect("few holes");
        // The first half of such a batch's apply: the special account's next serial.
        let (_, mut special) = reads
            .list_specials("", None, 10)
            .expect("specials")
            .into_iter()
            .find(|(_, s)| s.court.as_str() == "云0102")
            .expect("special");
        special.next_case_serial += 1;
        (reads.tree)
            .insert(
                crate::store::keys::special(special.id),
                crate::store::state::encode(&special),
            )
            .expect("insert");
        let during = unseen_by_serial(&snap, &run.seen, &covers).expect("no fault");
        assert_eq!(during, Some(before));
        store.close().await;
    }

    #[test]
    fn unseen_counts_only_issued_serials() {
        let mut seen = SeenCases::default();
        for serial in [1, 2, 63, 64, 65, 130] {
            seen.insert((7, serial));
        }
        assert_eq!(seen.unseen(7, 1), 0);
        assert_eq!(seen.unseen(7, 4), 1);
        assert_eq!(seen.unseen(7, 66), 65 - 5);
        assert_eq!(seen.unseen(7, 131), 130 - 6);
        assert_eq!(seen.unseen(8, 11), 10);
    }
}
