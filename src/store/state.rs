//! The derived state in sled, read directly by readers and through an [`Overlay`] by
//! the writer, whose batch is invisible to everyone until it is durable and applied.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    BankLine, BankRef, CaseFacts, CaseNumber, CaseState, DeferralState, DisbursementState, Entry,
    Meta, PrincipalState, RequestId, RequestRecord, SpecialAccountState, SpecialLine, Text,
    UnidentifiedReceiptState, VirtualAccountNumber,
};
use crate::ledger::{Fault, State, StateMut};

use super::journal::{self, Frame, Hash, JournalReader, Location};
use super::keys;

/// Read access to the derived state and to the journal's entries.
#[derive(Clone)]
pub struct SledState {
    pub(crate) tree: super::kv::Tree,
    pub(crate) journal: Arc<JournalReader>,
}

fn fault(e: impl std::fmt::Display) -> Fault {
    Fault(e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Fault> {
    postcard::from_bytes(bytes).map_err(|e| Fault(format!("undecodable state record: {e}")))
}

/// Special lines are kept 64 to a key, [`LINE_GROUP`]: one sled key a receipt fewer.
pub const LINE_GROUP: usize = 64;

/// The lines of one special account under one key (`keys::special_line` of the first
/// one's sequence), in sequence order: the next [`LINE_GROUP`] lines of the account,
/// whatever batches they came in, so that the grouping follows from the journal alone.
pub type LineGroup = Vec<(u64, SpecialEntryLine)>;

/// Where a special account's last group starts and how many lines it has (`A`), so
/// that the next batch goes on filling it.
#[derive(Debug, Serialize, Deserialize)]
pub struct LineGroupHead {
    pub first: u64,
    pub len: u32,
}

/// A group a batch is filling.
struct OpenGroup {
    first: u64,
    lines: LineGroup,
}

/// The record under a special-line key: the special account's money after an entry,
/// and the entry's movement of its bank balance if it made one. Both under one key,
/// because a receipt makes both and every sled key costs.
#[derive(Debug, Serialize, Deserialize)]
pub struct SpecialEntryLine {
    pub line: SpecialLine,
    pub bank: Option<BankLine>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard fails only for types serde cannot describe or a full fixed buffer; these
    // are plain derived types written into a growable Vec, so failure is a bug of ours.
    #[allow(clippy::expect_used)]
    postcard::to_stdvec(value).expect("plain state records always encode")
}

impl SledState {
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Fault> {
        match self.tree.get(key).map_err(fault)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn journal_end(&self) -> Result<u64, Fault> {
        Ok(self.get::<u64>(keys::JOURNAL_END)?.unwrap_or(0))
    }

    /// The last sequence applied (0 before the first entry).
    pub fn last_sequence(&self) -> Result<u64, Fault> {
        Ok(self.meta()?.next_sequence.saturating_sub(1))
    }

    pub fn entry_location(&self, sequence: u64) -> Result<Option<Location>, Fault> {
        if sequence == 0 {
            return Ok(None);
        }
        let (block, index) = keys::entry_block_of(sequence);
        let block: Option<Vec<Location>> = self.get(&keys::entry_block(block))?;
        Ok(block.and_then(|b| b.get(index).copied()))
    }

    /// The locations (with hashes) of entries `from..=to`, in order.
    pub fn entry_locations(&self, from: u64, to: u64) -> Result<Vec<(u64, Location)>, Fault> {
        let mut out = Vec::new();
        let from = from.max(1);
        if from > to {
            return Ok(out);
        }
        let first = keys::entry_block(keys::entry_block_of(from).0);
        let last = keys::entry_block(keys::entry_block_of(to).0);
        for item in self.tree.range(first..=last) {
            let (key, value) = item.map_err(fault)?;
            let block =
                keys::line_sequence(&key).ok_or_else(|| Fault("malformed entry key".into()))?;
            let locations: Vec<Location> = decode(&value)?;
            let first = (block.checked_mul(keys::ENTRY_BLOCK))
                .and_then(|b| b.checked_add(1))
                .ok_or_else(|| Fault("malformed entry key".into()))?;
            for (sequence, location) in (first..).zip(locations) {
                if (from..=to).contains(&sequence) {
                    out.push((sequence, location));
                }
            }
        }
        Ok(out)
    }

    /// An entry with its hashes and its canonical bytes, as the journal holds them.
    pub fn journal_entry(&self, sequence: u64) -> Result<Option<(Frame, Vec<u8>)>, Fault> {
        match self.entry_location(sequence)? {
            Some(loc) => self.journal.read_raw(loc).map(Some).map_err(fault),
            None => Ok(None),
        }
    }

    /// The engine that keeps this state.
    pub fn engine(&self) -> super::kv::Engine {
        self.tree.engine()
    }

    /// SHA-256 over every key and value of the derived state, in key order: two states
    /// are the same exactly when their digests are. The undo record is bookkeeping of
    /// the last batch applied, not content, and is left out.
    pub fn content_digest(&self) -> Result<Hash, Fault> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(fault)?;
            if keys::is_undo(&k) {
                continue;
            }
            h.update((k.len() as u64).to_le_bytes());
            h.update(&k);
            h.update((v.len() as u64).to_le_bytes());
            h.update(&v);
        }
        Ok(h.finalize().into())
    }

    pub fn journal_path(&self) -> &std::path::Path {
        self.journal.path()
    }
}

impl State for SledState {
    fn meta(&self) -> Result<Meta, Fault> {
        Ok(self.get(keys::META)?.unwrap_or_default())
    }
    fn special(&self, id: Uuid) -> Result<Option<SpecialAccountState>, Fault> {
        self.get(&keys::special(id))
    }
    fn case(&self, id: Uuid) -> Result<Option<CaseState>, Fault> {
        self.get(&keys::case(id))
    }
    fn case_by_number(&self, number: &CaseNumber) -> Result<Option<Uuid>, Fault> {
        self.get(&keys::case_number(number.as_str()))
    }
    fn case_by_van(&self, van: &VirtualAccountNumber) -> Result<Option<Uuid>, Fault> {
        self.get(&keys::van(van.as_str()))
    }
    fn disbursement(&self, id: Uuid) -> Result<Option<DisbursementState>, Fault> {
        self.get(&keys::disbursement(id))
    }
    fn request(&self, id: &RequestId) -> Result<Option<RequestRecord>, Fault> {
        self.get(&keys::request(id.as_str()))
    }
    fn bank_ref(&self, special_id: Uuid, bank_ref: &BankRef) -> Result<Option<u64>, Fault> {
        self.get(&keys::bank_ref(special_id, bank_ref.as_str()))
    }
    fn entry(&self, sequence: u64) -> Result<Option<Entry>, Fault> {
        match self.entry_location(sequence)? {
            Some(loc) => self.journal.read(loc).map(Some).map_err(fault),
            None => Ok(None),
        }
    }
    fn reversed_by(&self, sequence: u64) -> Result<Option<u64>, Fault> {
        self.get(&keys::reversed_by(sequence))
    }
    fn unidentified(&self, id: Uuid) -> Result<Option<UnidentifiedReceiptState>, Fault> {
        self.get(&keys::unidentified(id))
    }
    fn deferral(&self, id: Uuid) -> Result<Option<DeferralState>, Fault> {
        self.get(&keys::deferral(id))
    }
    fn principal(&self, id: Uuid) -> Result<Option<PrincipalState>, Fault> {
        self.get(&keys::principal(id))
    }
    fn principal_by_name(&self, name: &Text) -> Result<Option<Uuid>, Fault> {
        self.get(&keys::principal_by_name(name.as_str()))
    }
    fn all_principals(&self) -> Result<Vec<PrincipalState>, Fault> {
        self.principals()
    }
}

/// A batch's entries. Their sequences follow one another without gaps, so an entry
/// is found by its distance from the first: no hashing, and no rehash that moves
/// every entry as a large batch grows (a profile of the writer showed it).
#[derive(Default)]
struct BatchEntries(Vec<Entry>);

impl BatchEntries {
    fn get(&self, sequence: u64) -> Option<&Entry> {
        let first = self.0.first()?.sequence;
        let index = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.0.get(index).filter(|e| e.sequence == sequence)
    }

    /// Adds the next entry; refuses one that does not follow the last.
    fn push(&mut self, entry: Entry) -> Result<(), Fault> {
        if let Some(last) = self.0.last() {
            if last.sequence.checked_add(1) != Some(entry.sequence) {
                return Err(Fault(format!(
                    "entry {} does not follow entry {} in its batch",
                    entry.sequence, last.sequence
                )));
            }
        }
        self.0.push(entry);
        Ok(())
    }
}

/// Where the writer remembers what the indexes written once and never again (case
/// number → case, virtual account → case) said when it found them in sled, so that a
/// backlog of receipts to the same cases does not look each up in sled every time.
/// Only what was read from sled is kept: it is applied, so durable, and no later batch
/// can change it. Bounded: emptied when full.
#[derive(Default)]
pub struct IndexCache(std::cell::RefCell<HashMap<Vec<u8>, Uuid>>);

impl IndexCache {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// Enough for the cases a province's backlog touches; about 100 bytes each.
const INDEX_CACHE_MAX: usize = 1 << 17;

/// A batch's writes to sled. While it is in the journal but not yet in sled (the
/// committer makes it durable and applies it), the writer decides the next batch
/// through it.
pub struct InFlight {
    writes: HashMap<Vec<u8>, Vec<u8>>,
    entries: BatchEntries,
    /// The journal offset of the batch's first frame.
    start: u64,
    /// The journal offset the state covers once the batch is applied.
    end: u64,
}

impl InFlight {
    /// The journal offset of the batch's first frame.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The journal offset the state covers once the batch is applied.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Whether the batch holds this entry.
    pub fn holds(&self, sequence: u64) -> bool {
        self.entries.get(sequence).is_some()
    }

    /// The batch's writes in the order they are applied ([`keys::apply_rank`]).
    pub fn writes_in_order(&self) -> Vec<(&[u8], &[u8])> {
        let mut writes: Vec<(&[u8], &[u8])> = (self.writes.iter())
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        writes.sort_unstable_by(|a, b| {
            (keys::apply_rank(a.0), a.0).cmp(&(keys::apply_rank(b.0), b.0))
        });
        writes
    }
}

/// The writer's view during one batch: its own writes first, then those of earlier
/// batches still in flight, then sled. It also frames the batch's entries for the
/// journal as they are applied.
pub struct Overlay<'a> {
    base: &'a SledState,
    /// Earlier batches not yet applied to sled, oldest first.
    in_flight: Vec<Arc<InFlight>>,
    writes: HashMap<Vec<u8>, Vec<u8>>,
    entries: BatchEntries,
    index_cache: Option<&'a IndexCache>,
    /// The journal offset the batch's first frame will land at.
    journal_base: u64,
    frames: Vec<u8>,
    encode_error: Option<String>,
    /// Set while replaying an entry that already lies in the journal at this place.
    recorded_at: Option<Location>,
    /// The special-line groups this batch is filling, written out at its end.
    line_groups: HashMap<Uuid, OpenGroup>,
    /// The block of entry locations this batch is filling (its number and locations).
    entry_block: Option<(u64, Vec<Location>)>,
    /// Case and special account records this batch wrote, kept decoded and encoded
    /// once at its end: nearly every entry rewrites its special account and its case,
    /// and decoding and encoding them (parties, bank registrations) for each was a
    /// sixth of the writer's time in a backlog (BENCHMARKS.md).
    cases: HashMap<Uuid, CaseState>,
    specials: HashMap<Uuid, SpecialAccountState>,
    /// The journal offset the state covers once this batch is applied.
    end: u64,
    /// The chain value after the last entry framed (or replayed) so far.
    chain_head: Hash,
    /// The sequence of that entry (0 before any).
    last_sequence: u64,
}

impl<'a> Overlay<'a> {
    /// An empty batch over `base` alone, whose first frame lands at `journal_base` and
    /// chains to `chain_head`.
    pub fn new(base: &'a SledState, journal_base: u64, chain_head: Hash) -> Self {
        Self::over(base, journal_base, chain_head, Vec::new())
    }

    /// An overlay over batches still in flight (oldest first) and sled.
    pub fn over(
        base: &'a SledState,
        journal_base: u64,
        chain_head: Hash,
        in_flight: Vec<Arc<InFlight>>,
    ) -> Self {
        Overlay {
            base,
            in_flight,
            writes: HashMap::new(),
            entries: BatchEntries::default(),
            index_cache: None,
            journal_base,
            frames: Vec::new(),
            encode_error: None,
            recorded_at: None,
            line_groups: HashMap::new(),
            entry_block: None,
            cases: HashMap::new(),
            specials: HashMap::new(),
            end: journal_base,
            chain_head,
            last_sequence: 0,
        }
    }

    /// Remembers the write-once indexes it finds in sled in `cache`, and looks there
    /// first.
    pub fn with_index_cache(mut self, cache: &'a IndexCache) -> Self {
        self.index_cache = Some(cache);
        self
    }

    /// The last entry the batch holds, if any.
    pub fn last_sequence(&self) -> Option<u64> {
        (self.last_sequence > 0).then_some(self.last_sequence)
    }

    pub fn chain_head(&self) -> Hash {
        self.chain_head
    }

    /// Applies an entry read back from the journal at start-up: its frame is already
    /// there, so only its location is indexed.
    /// Its chain link is checked first: a journal that does not verify is not applied.
    pub fn apply_recorded(&mut self, frame: &Frame, offset: u64, len: u32) -> Result<(), Fault> {
        let link = journal::chain(&self.chain_head, &frame.entry_hash);
        if link != frame.chain {
            return Err(Fault(format!(
                "entry {} does not match its chain hash: the journal was altered",
                frame.entry.sequence
            )));
        }
        self.recorded_at = Some(Location {
            offset,
            len,
            entry_hash: frame.entry_hash,
            chain: frame.chain,
        });
        let applied = crate::ledger::apply(self, &frame.entry);
        self.recorded_at = None;
        applied
    }

    /// How many entries the batch holds so far.
    pub fn len(&self) -> usize {
        self.entries.0.len()
    }

    pub fn frame_bytes(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.0.is_empty()
    }

    /// Consumes the overlay into the journal frames to append and the batch's writes
    /// to sled (which the next batches read until sled has them).
    pub fn into_batch(mut self) -> Result<(Vec<u8>, InFlight), Fault> {
        if let Some((block, locations)) = self.entry_block.take() {
            self.put(keys::entry_block(block), &locations);
        }
        for (id, case) in std::mem::take(&mut self.cases) {
            self.put(keys::case(id), &case);
        }
        for (id, special) in std::mem::take(&mut self.specials) {
            self.put(keys::special(id), &special);
        }
        for (special_id, group) in std::mem::take(&mut self.line_groups) {
            let head = LineGroupHead {
                first: group.first,
                len: u32::try_from(group.lines.len()).unwrap_or(u32::MAX),
            };
            self.put(keys::special_line(special_id, group.first), &group.lines);
            self.put(keys::line_group_head(special_id), &head);
        }
        if let Some(e) = self.encode_error {
            return Err(Fault(e));
        }
        let batch = InFlight {
            writes: self.writes,
            entries: self.entries,
            start: self.journal_base,
            end: self.end,
        };
        Ok((self.frames, batch))
    }

    /// What this batch, or else the newest batch in flight that wrote `key`, wrote there.
    fn layered(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.writes
            .get(key)
            .or_else(|| (self.in_flight.iter().rev()).find_map(|f| f.writes.get(key)))
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Fault> {
        match self.layered(key) {
            Some(bytes) => decode(bytes).map(Some),
            None => self.base.get(key),
        }
    }

    /// A write-once index (`case_number`, `van`): from this batch or those in flight,
    /// else from the cache, else from sled into the cache.
    fn get_index(&self, key: &[u8]) -> Result<Option<Uuid>, Fault> {
        if let Some(bytes) = self.layered(key) {
            return decode(bytes).map(Some);
        }
        let Some(cache) = self.index_cache else {
            return self.base.get(key);
        };
        if let Some(id) = cache.0.borrow().get(key) {
            return Ok(Some(*id));
        }
        let found: Option<Uuid> = self.base.get(key)?;
        if let Some(id) = found {
            let mut cache = cache.0.borrow_mut();
            if cache.len() >= INDEX_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key.to_vec(), id);
        }
        Ok(found)
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.writes.insert(key, encode(value));
    }

    /// Adds an entry's location to its block, which earlier batches may have begun.
    fn put_location(&mut self, sequence: u64, location: Location) -> Result<(), Fault> {
        let (block, index) = keys::entry_block_of(sequence);
        let mut open = match self.entry_block.take() {
            Some((number, locations)) if number == block => locations,
            other => {
                if let Some((number, locations)) = other {
                    self.put(keys::entry_block(number), &locations);
                }
                if index == 0 {
                    Vec::new()
                } else {
                    self.get(&keys::entry_block(block))?.unwrap_or_default()
                }
            }
        };
        // Sequences are gapless, so the block holds exactly the entries before this one.
        if open.len() != index {
            return Err(Fault(format!(
                "entry {sequence}: its block of locations holds {} entries, not {index}",
                open.len()
            )));
        }
        open.push(location);
        self.entry_block = Some((block, open));
        Ok(())
    }

    /// The group a special account's next line goes into: its last one if that has
    /// room, else a new one starting at `sequence`.
    fn open_group(&self, special_id: Uuid, sequence: u64) -> Result<OpenGroup, Fault> {
        let head: Option<LineGroupHead> = self.get(&keys::line_group_head(special_id))?;
        match head {
            Some(head) if (head.len as usize) < LINE_GROUP => {
                let lines: LineGroup = self
                    .get(&keys::special_line(special_id, head.first))?
                    .unwrap_or_default();
                let follows = lines.last().is_some_and(|(last, _)| *last < sequence);
                if lines.len() != head.len as usize || !follows {
                    return Err(Fault(format!(
                        "special account {special_id}: its last line group ({}) does not hold the {} lines before entry {sequence} its head says",
                        head.first, head.len
                    )));
                }
                Ok(OpenGroup {
                    first: head.first,
                    lines,
                })
            }
            _ => Ok(OpenGroup {
                first: sequence,
                lines: Vec::new(),
            }),
        }
    }
}

impl State for Overlay<'_> {
    fn meta(&self) -> Result<Meta, Fault> {
        Ok(self.get(keys::META)?.unwrap_or_default())
    }
    fn special(&self, id: Uuid) -> Result<Option<SpecialAccountState>, Fault> {
        match self.specials.get(&id) {
            Some(special) => Ok(Some(special.clone())),
            None => self.get(&keys::special(id)),
        }
    }
    fn case(&self, id: Uuid) -> Result<Option<CaseState>, Fault> {
        match self.cases.get(&id) {
            Some(case) => Ok(Some(case.clone())),
            None => self.get(&keys::case(id)),
        }
    }
    fn case_by_number(&self, number: &CaseNumber) -> Result<Option<Uuid>, Fault> {
        self.get_index(&keys::case_number(number.as_str()))
    }
    fn case_by_van(&self, van: &VirtualAccountNumber) -> Result<Option<Uuid>, Fault> {
        self.get_index(&keys::van(van.as_str()))
    }
    fn disbursement(&self, id: Uuid) -> Result<Option<DisbursementState>, Fault> {
        self.get(&keys::disbursement(id))
    }
    fn request(&self, id: &RequestId) -> Result<Option<RequestRecord>, Fault> {
        self.get(&keys::request(id.as_str()))
    }
    fn bank_ref(&self, special_id: Uuid, bank_ref: &BankRef) -> Result<Option<u64>, Fault> {
        self.get(&keys::bank_ref(special_id, bank_ref.as_str()))
    }
    fn entry(&self, sequence: u64) -> Result<Option<Entry>, Fault> {
        let found = self
            .entries
            .get(sequence)
            .or_else(|| (self.in_flight.iter().rev()).find_map(|f| f.entries.get(sequence)));
        match found {
            Some(e) => Ok(Some(e.clone())),
            None => self.base.entry(sequence),
        }
    }
    fn reversed_by(&self, sequence: u64) -> Result<Option<u64>, Fault> {
        self.get(&keys::reversed_by(sequence))
    }
    fn unidentified(&self, id: Uuid) -> Result<Option<UnidentifiedReceiptState>, Fault> {
        self.get(&keys::unidentified(id))
    }
    fn deferral(&self, id: Uuid) -> Result<Option<DeferralState>, Fault> {
        self.get(&keys::deferral(id))
    }
    fn principal(&self, id: Uuid) -> Result<Option<PrincipalState>, Fault> {
        self.get(&keys::principal(id))
    }
    fn principal_by_name(&self, name: &Text) -> Result<Option<Uuid>, Fault> {
        self.get(&keys::principal_by_name(name.as_str()))
    }
    fn all_principals(&self) -> Result<Vec<PrincipalState>, Fault> {
        // Sled's principals, overwritten by those of the batches in flight (oldest
        // first) and then by this batch's own, as `get` would find each of them.
        let mut found: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
            std::collections::BTreeMap::new();
        for kv in self.base.tree.scan_prefix(keys::PRINCIPALS_PREFIX) {
            let (k, v) = kv.map_err(fault)?;
            found.insert(k.to_vec(), v.to_vec());
        }
        let layers = self
            .in_flight
            .iter()
            .map(|f| &f.writes)
            .chain([&self.writes]);
        for writes in layers {
            for (k, v) in writes {
                if k.starts_with(keys::PRINCIPALS_PREFIX) {
                    found.insert(k.clone(), v.clone());
                }
            }
        }
        found.values().map(|v| decode(v)).collect()
    }
}

impl StateMut for Overlay<'_> {
    fn put_meta(&mut self, meta: Meta) {
        self.put(keys::META.to_vec(), &meta);
    }
    fn put_special(&mut self, special: SpecialAccountState) {
        self.put(
            keys::special_by_court(special.court.as_str(), special.id),
            &(),
        );
        self.specials.insert(special.id, special);
    }
    fn put_case(&mut self, case: CaseState) {
        self.cases.insert(case.id, case);
    }
    fn put_case_number(&mut self, number: CaseNumber, case_id: Uuid) {
        self.put(keys::case_number(number.as_str()), &case_id);
    }
    fn put_van(&mut self, van: VirtualAccountNumber, case_id: Uuid) {
        self.put(keys::van(van.as_str()), &case_id);
    }
    fn put_disbursement(&mut self, d: DisbursementState) {
        self.put(keys::disbursement(d.id), &d);
    }
    fn put_request(&mut self, id: RequestId, record: RequestRecord) {
        self.put(keys::request(id.as_str()), &record);
    }
    fn put_bank_ref(&mut self, special_id: Uuid, bank_ref: BankRef, sequence: u64) {
        self.put(keys::bank_ref(special_id, bank_ref.as_str()), &sequence);
    }
    fn put_entry(&mut self, entry: &Entry) {
        let loc = match self.recorded_at {
            Some(loc) => loc,
            None => match journal::encode_frame(entry, &self.chain_head, &mut self.frames) {
                Ok(loc) => Location {
                    offset: self.journal_base + loc.offset,
                    ..loc
                },
                Err(e) => {
                    self.encode_error = Some(e);
                    return;
                }
            },
        };
        self.end = loc.offset + u64::from(loc.len);
        self.chain_head = loc.chain;
        self.last_sequence = entry.sequence;
        if let Err(e) = self.put_location(entry.sequence, loc) {
            self.encode_error = Some(e.0);
        }
        if let Err(e) = self.entries.push(entry.clone()) {
            self.encode_error = Some(e.0);
        }
    }
    fn put_reversed_by(&mut self, sequence: u64, by: u64) {
        self.put(keys::reversed_by(sequence), &by);
    }
    fn put_special_line(&mut self, special_id: Uuid, sequence: u64, line: SpecialLine) {
        // The entry's bank line, if any, is added to this record by `put_bank_line`.
        let record = SpecialEntryLine { line, bank: None };
        let mut group = match self.line_groups.remove(&special_id) {
            Some(group) => group,
            None => match self.open_group(special_id, sequence) {
                Ok(group) => group,
                Err(e) => {
                    self.encode_error = Some(e.0);
                    return;
                }
            },
        };
        if group.lines.len() >= LINE_GROUP {
            self.put(keys::special_line(special_id, group.first), &group.lines);
            group = OpenGroup {
                first: sequence,
                lines: Vec::new(),
            };
        }
        group.lines.push((sequence, record));
        self.line_groups.insert(special_id, group);
    }
    fn put_unidentified(&mut self, receipt: UnidentifiedReceiptState) {
        self.put(
            keys::unidentified_by_special(receipt.special_id, receipt.id),
            &(),
        );
        self.put(keys::unidentified(receipt.id), &receipt);
    }
    fn put_deferral(&mut self, deferral: DeferralState) {
        self.put(keys::deferral(deferral.id), &deferral);
    }
    fn put_case_facts(&mut self, case_number: &CaseNumber, sequence: u64, facts: CaseFacts) {
        self.put(keys::case_facts(case_number, sequence), &facts);
    }
    fn put_bank_line(&mut self, special_id: Uuid, sequence: u64, line: BankLine) {
        // `apply` writes the entry's special line first and refuses a bank line for an
        // account the entry did not touch, so the line is the last of an open group.
        let last = (self.line_groups.get_mut(&special_id))
            .and_then(|group| group.lines.last_mut())
            .filter(|(seq, _)| *seq == sequence);
        match last {
            Some((_, record)) => record.bank = Some(line),
            None => {
                self.encode_error = Some(format!(
                    "entry {sequence}: a bank line for special account {special_id} without its special line"
                ))
            }
        }
    }
    fn put_principal(&mut self, p: PrincipalState) {
        self.put(keys::principal_by_name(p.name.as_str()), &p.id);
        self.put(keys::principal(p.id), &p);
    }
}

impl SledState {
    /// Every principal, for the server's token map at start-up.
    pub fn principals(&self) -> Result<Vec<PrincipalState>, Fault> {
        self.tree
            .scan_prefix(keys::PRINCIPALS_PREFIX)
            .map(|kv| kv.map_err(fault).and_then(|(_, v)| decode(&v)))
            .collect()
    }

    /// Up to `limit` principals after `after`, in id order: a page costs its own size.
    pub fn principals_after(
        &self,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<PrincipalState>, Fault> {
        use std::ops::Bound;
        let start = match after {
            Some(id) => Bound::Excluded(keys::principal(id)),
            None => Bound::Included(keys::PRINCIPALS_PREFIX.to_vec()),
        };
        self.tree
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.starts_with(keys::PRINCIPALS_PREFIX))
            })
            .take(limit)
            .map(|kv| kv.map_err(fault).and_then(|(_, v)| decode(&v)))
            .collect()
    }
}

#[cfg(test)]
mod index_cache {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::{IndexCache, Overlay, SledState};
    use crate::domain::Micros;
    use crate::ledger::{self, Context, State};
    use crate::store::journal;
    use crate::store::undo::tests::{case_number, ledger, open_case};

    /// What the cache answers must be what sled holds: the indexes of a batch that
    /// never reached sled (refused at its append) are not remembered, and an index
    /// found in sled is answered from the cache afterwards.
    #[tokio::test]
    async fn remembers_only_what_sled_holds() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let special_id = ledger(dir.path()).await;
        let db = crate::store::kv::Tree::open_sled_db(&dir.path().join("state"))
            .unwrap_or_else(|e| panic!("{e}"));
        let tree = crate::store::kv::Tree::sled(&db).unwrap_or_else(|e| panic!("{e}"));
        let (_, reader) =
            journal::open(&dir.path().join("journal.log")).unwrap_or_else(|e| panic!("{e}"));
        let state = SledState {
            tree,
            journal: Arc::new(reader),
        };
        let cache = IndexCache::default();
        let lookup = |overlay: &Overlay<'_>, n: u32| -> Option<Uuid> {
            overlay
                .case_by_number(&case_number(n))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let in_sled = {
            let mut overlay = Overlay::new(&state, 0, [0; 32]).with_index_cache(&cache);
            let ctx = Context {
                now: Micros(1_710_000_000_000_000),
                new_id: Uuid::now_v7(),
                tiers: Default::default(),
            };
            let opened = ledger::execute(&mut overlay, &open_case(special_id, 3), &ctx);
            assert!(opened.is_ok(), "{opened:?}");
            assert!(
                lookup(&overlay, 3).is_some(),
                "its own batch sees the new case"
            );
            lookup(&overlay, 1)
        };
        assert!(in_sled.is_some());
        assert_eq!(
            cache.len(),
            1,
            "only the index read from sled is remembered"
        );
        let next = Overlay::new(&state, 0, [0; 32]).with_index_cache(&cache);
        assert_eq!(
            lookup(&next, 3),
            None,
            "the dropped batch's case is unknown"
        );
        assert_eq!(lookup(&next, 1), in_sled);
        assert_eq!(
            lookup(&next, 2),
            state.case_by_number(&case_number(2)).ok().flatten()
        );
        assert_eq!(cache.len(), 2);
    }
}
