//! The layout of the derived state in sled: one tree, one byte of prefix per kind of
//! record. Big-endian numbers keep range scans in numeric order.

use uuid::Uuid;

use crate::domain::CaseNumber;

pub const META: &[u8] = b"m";
/// The journal offset up to which the state has been built.
pub const JOURNAL_END: &[u8] = b"j";
/// What the keys of the batch being applied held before it (`store::undo`).
pub const UNDO: &[u8] = b"U";
/// The layout version of the state (a big-endian u32), [`STATE_FORMAT`].
pub const STATE_FORMAT_KEY: &[u8] = b"V";
/// Bumped whenever a record stored in the state changes shape, so that a build never
/// reads a state written by another as garbage: it refuses, and `rebuild` makes a new
/// one from the journal (which keeps its own format byte per frame).
/// 2: disbursements record who requested and approved them (issue 5).
/// 3: deferrals record who recorded them and the approver's decision.
/// 4: a case's statement is read from its facts lines (`q`); the separate case lines
///    (`l`, one more key an entry with the same balances) are no longer written.
/// 5: an entry's bank line is kept in its special-line record (`a`), not under a key
///    of its own (`k`).
/// 6: a batch is applied key by key after an undo record (`U`), not as one sled batch.
/// 7: special lines are kept 64 to a key (`a`, with the last group's head under `A`).
/// 8: entry locations are kept 64 to a key (`e` + block).
pub const STATE_FORMAT: u32 = 8;

/// One part of the undo record: `(key, what it held)` pairs of the batch being applied.
pub fn undo_chunk(index: u32) -> Vec<u8> {
    key(b'U', &[&index.to_be_bytes()])
}

/// Whether a key is the undo record's, not derived content.
pub fn is_undo(key: &[u8]) -> bool {
    key.first() == Some(&b'U')
}

/// Where a key comes in a batch applied key by key: what is referred to before what
/// refers to it. A reader that follows a reference (a case's entries, an index's
/// record, a request's sequence) while a batch is half applied then finds its target,
/// as it would between two batches.
pub fn apply_rank(key: &[u8]) -> u8 {
    match key.first() {
        // Entry locations: every sequence mentioned anywhere resolves.
        Some(b'e') => 0,
        // Special line groups and case facts, keyed by sequence.
        Some(b'a' | b'q') => 1,
        // Special accounts and principals, which other records name.
        Some(b's' | b'g') => 2,
        // Case accounts, which name their special account.
        Some(b'c') => 3,
        // Disbursements, unidentified receipts, deferrals: they name the above.
        Some(b'd' | b'u' | b'y') => 4,
        // The ledger's next sequence: what "the last entry" means to readers.
        Some(b'm') => 6,
        // Indexes to records and sequences: court, case number, virtual account,
        // unidentified by special, principal name, request, bank reference, reversal;
        // the head of a special account's last line group.
        _ => 5,
    }
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn special(id: Uuid) -> Vec<u8> {
    key(b's', &[id.as_bytes()])
}

/// `p` + court code + `/` + id: listing by court prefix is a prefix scan, since a
/// court code's UTF-8 bytes start with those of every court above it.
pub fn special_by_court(court: &str, id: Uuid) -> Vec<u8> {
    key(b'p', &[court.as_bytes(), b"/", id.as_bytes()])
}

pub fn special_by_court_prefix(court_prefix: &str) -> Vec<u8> {
    key(b'p', &[court_prefix.as_bytes()])
}

pub fn case(id: Uuid) -> Vec<u8> {
    key(b'c', &[id.as_bytes()])
}

pub fn case_number(number: &str) -> Vec<u8> {
    key(b'n', &[number.as_bytes()])
}

pub fn van(van: &str) -> Vec<u8> {
    key(b'v', &[van.as_bytes()])
}

pub fn disbursement(id: Uuid) -> Vec<u8> {
    key(b'd', &[id.as_bytes()])
}

pub fn request(id: &str) -> Vec<u8> {
    key(b'r', &[id.as_bytes()])
}

pub fn bank_ref(special_id: Uuid, bank_ref: &str) -> Vec<u8> {
    key(b'b', &[special_id.as_bytes(), bank_ref.as_bytes()])
}

/// Entry locations are kept 64 to a key: entries 1-64 under block 0, 65-128 under 1...
pub const ENTRY_BLOCK: u64 = 64;

/// The block holding an entry's location, and the entry's place in it.
pub fn entry_block_of(sequence: u64) -> (u64, usize) {
    let index = sequence.saturating_sub(1);
    (index / ENTRY_BLOCK, (index % ENTRY_BLOCK) as usize)
}

/// `e` + block number: the journal locations of the block's entries, in order (a
/// `Vec<Location>`, filled across batches).
pub fn entry_block(block: u64) -> Vec<u8> {
    key(b'e', &[&block.to_be_bytes()])
}

pub fn reversed_by(sequence: u64) -> Vec<u8> {
    key(b'x', &[&sequence.to_be_bytes()])
}

/// `a` + special account + sequence: a group of the account's lines starting with the
/// one of that entry (a [`super::state::LineGroup`]): its money after each entry and,
/// if the entry moved its bank balance, the bank line.
pub fn special_line(special_id: Uuid, sequence: u64) -> Vec<u8> {
    key(b'a', &[special_id.as_bytes(), &sequence.to_be_bytes()])
}

/// `A` + special account: where its last line group starts and how full it is.
pub fn line_group_head(special_id: Uuid) -> Vec<u8> {
    key(b'A', &[special_id.as_bytes()])
}

pub fn special_lines(special_id: Uuid) -> Vec<u8> {
    key(b'a', &[special_id.as_bytes()])
}

/// The number at the end of a key that ends in a big-endian one: a special line
/// group's first sequence, a block of entry locations' number.
pub fn line_sequence(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The sequence of the one entry that writes this key, for the keys only their own
/// entry ever writes: its case's facts line (`q`); not a block of locations (`e`) or
/// a group of lines (`a`), which later entries fill. Such a key of an entry not yet
/// applied is not in the state.
pub fn written_only_by(key: &[u8]) -> Option<u64> {
    match key.first() {
        Some(b'q') => case_facts_sequence(key),
        _ => None,
    }
}

/// Keys written at most once, ever, and only after the writer found them absent: a
/// request's record (`r`: a request id has one outcome) and a bank reference (`b`:
/// recorded at most once). A batch that writes one finds it absent before it. The
/// prefixes `r` and `b` are theirs alone (a test lists every other key).
pub fn written_once(key: &[u8]) -> bool {
    matches!(key.first(), Some(b'r' | b'b'))
}

// Issue 3 (reconciliation). Letters chosen apart from the rest so that other work on
// the layout does not collide with them.

pub fn unidentified(id: Uuid) -> Vec<u8> {
    key(b'u', &[id.as_bytes()])
}

/// `w` + special account + receipt id: ids are UUIDv7, so a prefix scan lists one
/// account's unidentified receipts in the order they were recorded.
pub fn unidentified_by_special(special_id: Uuid, id: Uuid) -> Vec<u8> {
    key(b'w', &[special_id.as_bytes(), id.as_bytes()])
}

pub fn unidentified_by_special_prefix(special_id: Uuid) -> Vec<u8> {
    key(b'w', &[special_id.as_bytes()])
}

pub fn deferral(id: Uuid) -> Vec<u8> {
    key(b'y', &[id.as_bytes()])
}

/// `q` + the case number's ordered key + !sequence: a case's `CaseFacts` after one of
/// its entries. Keyed by the case number a case-flow row carries, so a row costs one
/// read; the facts of all cases lie together, in the order a court lists its cases,
/// so an export in case-number or filing order reads them nearly sequentially. The
/// sequence is inverted so that "the last line at or before S" is the first key from
/// `case_facts(n, S)` on: sled's forward iteration is much cheaper than its backward
/// one. The ordered key has a fixed-length tail, so no case's keys run into another's.
pub fn case_facts(case_number: &CaseNumber, sequence: u64) -> Vec<u8> {
    key(
        b'q',
        &[&case_number.ordered_key(), &(!sequence).to_be_bytes()],
    )
}

/// The sequence of a facts key (stored inverted).
pub fn case_facts_sequence(key: &[u8]) -> Option<u64> {
    line_sequence(key).map(|inverted| !inverted)
}

pub fn case_facts_prefix(case_number: &CaseNumber) -> Vec<u8> {
    key(b'q', &[&case_number.ordered_key()])
}

pub const CASE_FACTS_PREFIX: &[u8] = b"q";

// Issue 5 (principals): `g` principal by id, `h` principal id by name.

pub fn principal(id: Uuid) -> Vec<u8> {
    key(b'g', &[id.as_bytes()])
}

pub const PRINCIPALS_PREFIX: &[u8] = b"g";

pub fn principal_by_name(name: &str) -> Vec<u8> {
    key(b'h', &[name.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The undo record reads no prior for a key `written_once` names: any other kind
    /// of key taken for one would be put back as absent after a crash. Every key of
    /// the layout is listed here; a new one belongs here too.
    #[test]
    fn only_request_records_and_bank_references_are_written_once() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let number = CaseNumber::parse("（2024）云0102执9号").unwrap_or_else(|e| panic!("{e:?}"));
        assert!(written_once(&request("req-1")));
        assert!(written_once(&bank_ref(id, "B-1")));
        let others: Vec<Vec<u8>> = vec![
            META.to_vec(),
            JOURNAL_END.to_vec(),
            UNDO.to_vec(),
            STATE_FORMAT_KEY.to_vec(),
            undo_chunk(0),
            special(id),
            special_by_court("110105", id),
            case(id),
            case_number("（2024）云0102执9号"),
            van("6222000000000000001"),
            disbursement(id),
            entry_block(3),
            reversed_by(7),
            special_line(id, 7),
            line_group_head(id),
            unidentified(id),
            unidentified_by_special(id, id),
            deferral(id),
            case_facts(&number, 7),
            principal(id),
            principal_by_name("finance-1"),
        ];
        for key in others {
            assert!(!written_once(&key), "{key:?}");
        }
        // And no other constructor here uses their letters.
        let source = include_str!("keys.rs");
        let layout = source.split("#[cfg(test)]").next().unwrap_or(source);
        for prefix in ["key(b'r'", "key(b'b'"] {
            assert_eq!(layout.matches(prefix).count(), 1, "{prefix}");
        }
    }
}
