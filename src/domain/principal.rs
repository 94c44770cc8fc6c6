//! Principals: who may act, in which roles and courts. Pure values; the journal records
//! every change to them (`Op::Principal*`), and `ledger::apply` derives their state.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{CourtCode, Fen, Text};

/// What a principal may do. A principal may hold several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Case officer: opens case accounts, records receipts, requests and cancels
    /// disbursements, records deferrals.
    Clerk,
    /// Approves or rejects disbursements (`approval_level` says up to which tier) and
    /// deferrals.
    Approver,
    /// Confirms, fails and returns payments; unidentified receipts; reconciliation.
    Finance,
    /// Special accounts, change registrations, principals.
    Admin,
    /// Reads only.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Clerk,
        Role::Approver,
        Role::Finance,
        Role::Admin,
        Role::Auditor,
    ];

    /// The roles that move money or decide whether it moves. Their holders bring
    /// their own tokens (an administrator never sees one), and no administrator holds
    /// one of them: one person could otherwise act as two.
    pub fn handles_money(self) -> bool {
        matches!(self, Role::Clerk | Role::Approver | Role::Finance)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Clerk => "clerk",
            Role::Approver => "approver",
            Role::Finance => "finance",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }
}

/// The most court codes one principal may name in each of its scope lists.
pub const SCOPES_MAX: usize = 64;
/// The highest approval level; tiers beyond it cannot be configured.
pub const APPROVAL_LEVEL_MAX: u8 = 9;

/// A principal as the journal has made it. Its token is kept only as a SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalState {
    pub id: Uuid,
    pub name: Text,
    pub roles: Vec<Role>,
    /// The courts it acts in (reads and writes), each covering the courts below it.
    pub courts: Vec<CourtCode>,
    /// The courts it supervises: it may read there and below, never write.
    pub supervises: Vec<CourtCode>,
    /// For approvers: the highest approval tier it may approve (1 = the lowest).
    pub approval_level: u8,
    pub enabled: bool,
    pub token_hash: [u8; 32],
    /// SHA-256 of the DER of the client certificate that authenticates it under mTLS.
    pub cert_sha256: Option<[u8; 32]>,
    pub created_sequence: u64,
    /// The entry that last changed it (added, rotated, disabled).
    pub changed_sequence: u64,
}

/// What reading or writing needs of a court.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl PrincipalState {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn handles_money(&self) -> bool {
        self.roles.iter().any(|r| r.handles_money())
    }

    /// Whether it may read or write in `court`: it acts in the courts its `courts`
    /// cover; a supervised court's code covers reads only.
    pub fn may(&self, access: Access, court: &CourtCode) -> bool {
        let acts = self.courts.iter().any(|c| c.covers(court));
        match access {
            Access::Write => acts,
            Access::Read => acts || self.supervises.iter().any(|c| c.covers(court)),
        }
    }

    /// An enabled administrator acting in 最高法: only such a principal can manage every
    /// other principal, so without one nobody could administer the server again
    /// (bootstrap runs only on an empty directory).
    pub fn is_national_admin(&self) -> bool {
        self.enabled && self.has_role(Role::Admin) && self.may_everywhere(Access::Write)
    }

    /// Whether it may do `access` in every court (a court scope of 最高法: for reading,
    /// a supervised one is enough).
    pub fn may_everywhere(&self, access: Access) -> bool {
        match access {
            Access::Write => self.courts.iter().any(CourtCode::is_supreme),
            Access::Read => self.reads_everything(),
        }
    }

    /// Whether it may read everything: the journal and whole-ledger listings.
    pub fn reads_everything(&self) -> bool {
        self.courts
            .iter()
            .chain(&self.supervises)
            .any(CourtCode::is_supreme)
    }
}

/// The approval tiers: an amount at or above `thresholds[i]` needs an approver of
/// level at least `i + 2`; below the first threshold, level 1 suffices. Thresholds
/// rise. "At or above" because courts write tiers as 以上 ("¥100,000以上"), which in
/// Chinese legal usage includes the number itself (刑法第九十九条: 以上、以下、以内，
/// 包括本数), and design.md's "below ¥100,000 the division head" leaves ¥100,000 to the
/// senior approver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalTiers {
    thresholds: [Option<Fen>; 4],
}

/// ¥100,000.00: from it up a senior approver (level 2) must approve.
pub const APPROVAL_TIER_DEFAULT_FEN: i64 = 10_000_000;

impl Default for ApprovalTiers {
    fn default() -> Self {
        ApprovalTiers {
            thresholds: [Some(Fen(APPROVAL_TIER_DEFAULT_FEN)), None, None, None],
        }
    }
}

impl ApprovalTiers {
    /// Tiers from rising thresholds (at most four); `None` if they do not rise.
    pub fn new(thresholds: &[Fen]) -> Option<ApprovalTiers> {
        if thresholds.len() > 4 || thresholds.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let mut t = [None; 4];
        for (slot, f) in t.iter_mut().zip(thresholds) {
            *slot = Some(*f);
        }
        Some(ApprovalTiers { thresholds: t })
    }

    /// The approval level an amount needs.
    pub fn level_for(&self, amount: Fen) -> u8 {
        let reached = self.thresholds.iter().flatten().filter(|t| amount >= **t);
        1 + reached.count() as u8
    }
}

/// The hash under which a bearer token is stored and looked up: the SHA-256 of its
/// bytes, exactly what `printf %s "$TOKEN" | sha256sum` prints, so that a holder who
/// generates a token on their own machine can hand over this hash and nothing else.
/// A token is 32 random bytes, so a fast hash suffices: a slow KDF only protects
/// guessable secrets, and there is nothing to guess in 256 random bits.
pub fn token_sha256(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// How tokens were hashed before holders could bring their own. Principals journaled
/// then keep these hashes, so a token is also looked up under this one.
pub fn legacy_token_hash(token: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"case-escrow/token/v1\0");
    h.update(token.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> CourtCode {
        CourtCode::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn principal(courts: &[&str], supervises: &[&str]) -> PrincipalState {
        PrincipalState {
            id: Uuid::nil(),
            name: Text::default(),
            roles: vec![Role::Clerk],
            courts: courts.iter().map(|c| code(c)).collect(),
            supervises: supervises.iter().map(|c| code(c)).collect(),
            approval_level: 1,
            enabled: true,
            token_hash: [0; 32],
            cert_sha256: None,
            created_sequence: 1,
            changed_sequence: 1,
        }
    }

    #[test]
    fn scopes_cover_lower_courts_and_supervision_reads_only() {
        let cases = [
            // (courts, supervises, court, read, write)
            (&["云01"][..], &[][..], "云0102", true, true),
            (&["云01"], &[], "云01", true, true),
            (&["云01"], &[], "云02", false, false),
            (&["云0102"], &[], "云01", false, false),
            (&["云0102"], &["云"], "云0203", true, false),
            (&["最高法"], &[], "京01", true, true),
            (&[], &["最高法"], "京01", true, false),
        ];
        for (courts, supervises, court, read, write) in cases {
            let p = principal(courts, supervises);
            assert_eq!(
                p.may(Access::Read, &code(court)),
                read,
                "{courts:?} read {court}"
            );
            assert_eq!(
                p.may(Access::Write, &code(court)),
                write,
                "{courts:?} write {court}"
            );
        }
    }

    #[test]
    fn tiers_name_the_level_an_amount_needs() {
        let t = ApprovalTiers::default();
        assert_eq!(t.level_for(Fen(1)), 1);
        assert_eq!(t.level_for(Fen(APPROVAL_TIER_DEFAULT_FEN - 1)), 1);
        assert_eq!(t.level_for(Fen(APPROVAL_TIER_DEFAULT_FEN)), 2);
        assert_eq!(t.level_for(Fen(APPROVAL_TIER_DEFAULT_FEN + 1)), 2);
        let t = ApprovalTiers::new(&[Fen(100), Fen(1000)]).unwrap_or_default();
        assert_eq!(t.level_for(Fen(999)), 2);
        assert_eq!(t.level_for(Fen(1000)), 3);
        assert!(ApprovalTiers::new(&[Fen(1000), Fen(100)]).is_none());
    }
}
