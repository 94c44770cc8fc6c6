//! Requests as the ledger sees them: validated, with no wire types and no request id.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{
    Amount, BankChange, BankDetails, BankRef, CaseNumber, ClosureMethod, CourtCode, Date,
    DeferralReason, Fen, Micros, Party, Payee, Purpose, RequestId, Role, Text,
    VirtualAccountNumber,
};

/// How a request names a case account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CaseKey {
    Number(CaseNumber),
    Van(VirtualAccountNumber),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    OpenSpecialAccount {
        court: CourtCode,
        bank: BankDetails,
        document_ref: Text,
    },
    RegisterAccountChange {
        special_id: Uuid,
        change: BankChange,
        reason: Text,
        document_ref: Text,
        /// `None`: at once, i.e. when recorded.
        effective_at: Option<Micros>,
    },
    CloseSpecialAccount {
        special_id: Uuid,
        reason: Text,
        document_ref: Text,
    },
    OpenCaseAccount {
        special_id: Uuid,
        case_number: CaseNumber,
        target: Fen,
        applicants: Vec<Party>,
        respondents: Vec<Party>,
    },
    RecordReceipt(Receipt),
    RequestDisbursement {
        case_number: CaseNumber,
        amount: Amount,
        payee: Payee,
        purpose: Purpose,
        memo: Text,
        exception_reason: Text,
    },
    ApproveDisbursement {
        disbursement_id: Uuid,
        approval_ref: Text,
    },
    RejectDisbursement {
        disbursement_id: Uuid,
        reason: Text,
    },
    CancelDisbursement {
        disbursement_id: Uuid,
        reason: Text,
    },
    ConfirmDisbursementPaid {
        disbursement_id: Uuid,
        bank_ref: BankRef,
        /// `None`: when recorded.
        paid_at: Option<Micros>,
    },
    FailDisbursement {
        disbursement_id: Uuid,
        reason: Text,
    },
    RecordReturnedPayment {
        disbursement_id: Uuid,
        bank_ref: BankRef,
        reason: Text,
    },
    TransferBetweenCases {
        from: CaseNumber,
        to: CaseNumber,
        amount: Amount,
        reason: Text,
        document_ref: Text,
    },
    ReverseEntry {
        sequence: u64,
        reason: Text,
    },
    CloseCaseAccount {
        case_number: CaseNumber,
        method: ClosureMethod,
        reason: Text,
    },
    // New variants go at the end: the request hash is over this encoding, so a
    // retried request must keep hashing the same across versions.
    RecordUnidentifiedReceipt {
        special_id: Uuid,
        amount: Amount,
        payer_name: Text,
        payer_account: Text,
        bank_ref: BankRef,
        value_date: Date,
        memo: Text,
    },
    AssignUnidentifiedReceipt {
        receipt_id: Uuid,
        case_number: CaseNumber,
    },
    ReturnUnidentifiedReceipt {
        receipt_id: Uuid,
        reason: Text,
        bank_ref: Option<BankRef>,
    },
    RecordDeferral {
        case_number: CaseNumber,
        reason: DeferralReason,
        approval_ref: Text,
        note: Text,
    },
    EndDeferral {
        deferral_id: Uuid,
    },
    /// RecordReceipt with `to_suspense_if_unmatched`: credited to the case if the key
    /// names an open case of this special account, else held in its suspense.
    RecordReceiptOrSuspense {
        special_id: Uuid,
        account: UnmatchedKey,
        amount: Amount,
        payer_name: Text,
        payer_account: Text,
        bank_ref: BankRef,
        value_date: Date,
    },
    /// The token itself never reaches the ledger: the API draws it, shows it once and
    /// passes its hash. A retry under the same request id draws a new token, so its
    /// hash differs and the retry is refused as a reused request id (ABORTED) rather
    /// than answered with a token nobody can show again.
    AddPrincipal {
        name: Text,
        roles: Vec<Role>,
        courts: Vec<CourtCode>,
        supervises: Vec<CourtCode>,
        approval_level: u8,
        token_hash: [u8; 32],
        cert_sha256: Option<[u8; 32]>,
    },
    DisablePrincipal {
        principal_id: Uuid,
        reason: Text,
    },
    RotateToken {
        principal_id: Uuid,
        token_hash: [u8; 32],
    },
    ApproveDeferral {
        deferral_id: Uuid,
    },
    RejectDeferral {
        deferral_id: Uuid,
        reason: Text,
    },
    /// RecordReceipt that names the special account the money arrived at: refused
    /// unless the case is under it. (Last of the variants, so that adding it changed no
    /// other command's bytes, nor so the hash a retry is compared by.)
    RecordReceiptAt {
        special_id: Uuid,
        receipt: Receipt,
    },
}

/// A receipt as RecordReceipt and RecordReceiptAt carry it. A struct encodes as its
/// fields in order, so `RecordReceipt(Receipt)` has the bytes (and the content hash)
/// that the struct variant it replaced had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub case: CaseKey,
    pub amount: Amount,
    pub payer_name: Text,
    pub payer_account: Text,
    pub bank_ref: BankRef,
    pub value_date: Date,
}

/// The account a payer gave, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnmatchedKey {
    Number(CaseNumber),
    Van(VirtualAccountNumber),
    /// A virtual account number that is malformed or fails its check digits.
    Unreadable(Text),
}

/// A command with the client's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub command: Command,
    /// Who asks: recorded in the entry, and the subject of the four-eyes rule. Not
    /// part of the content hash: a retry under the same request id by another
    /// principal gets the original outcome (the entry keeps its maker), since the
    /// request id names one request whoever resends it.
    pub principal: Option<Uuid>,
}

impl Request {
    /// SHA-256 of the command's canonical bytes. Validated values are canonical (an
    /// amount is fen, a case number has one form), so the same request sent as "1.0" or
    /// "1.00", with ASCII or full-width parentheses, hashes the same.
    pub fn content_hash(&self) -> [u8; 32] {
        hash(&self.command)
    }

    /// The hash this request had before [`Command::RecordReceiptAt`] existed: a
    /// RecordReceipt naming its special account was then a plain RecordReceipt (the
    /// field was ignored). A retry sent across the upgrade is the same request and
    /// gets the one outcome.
    pub fn earlier_hash(&self) -> Option<[u8; 32]> {
        match &self.command {
            Command::RecordReceiptAt { receipt, .. } => {
                Some(hash(&Command::RecordReceipt(receipt.clone())))
            }
            _ => None,
        }
    }
}

fn hash(command: &Command) -> [u8; 32] {
    // Room for a usual command up front: growing from empty reallocates several
    // times, on the writer's thread, for every request.
    // postcard fails only for types serde cannot describe; a command is plain derived
    // data written into a growable Vec, so failure is a bug of ours, not a request's.
    #[allow(clippy::expect_used)]
    let bytes = postcard::to_extend(command, Vec::with_capacity(256))
        .expect("plain commands always encode");
    let mut hasher = Sha256::new();
    hasher.update(b"case-escrow/request/v1\0");
    hasher.update(&bytes);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
        r.unwrap_or_else(|e| panic!("{e}"))
    }

    fn receipt(at: Option<Uuid>, amount: &str) -> Request {
        let receipt = Receipt {
            case: CaseKey::Number(ok(CaseNumber::parse("（2024）云0102执100号"))),
            amount: ok(Amount::parse(amount)),
            payer_name: ok(Text::required("张三", 10)),
            payer_account: ok(Text::optional("", 10)),
            bank_ref: ok(BankRef::parse("B-1")),
            value_date: ok(Date::parse("2024-03-05")),
        };
        let command = match at {
            None => Command::RecordReceipt(receipt),
            Some(special_id) => Command::RecordReceiptAt {
                special_id,
                receipt,
            },
        };
        Request {
            id: ok(RequestId::parse("r-1")),
            command,
            principal: None,
        }
    }

    /// The bytes a receipt hashes to are those every recorded receipt was compared by:
    /// a change of `Command`'s encoding would make each retry a reused request id.
    #[test]
    fn a_receipts_content_hash_is_what_it_always_was() {
        let hex: String = receipt(None, "1.00")
            .content_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ab66c2a4a0a03d4b74eaa2edf40d150cc3b4046ecc115cc9e0ba87e993eb50ee"
        );
    }

    /// A receipt that names its special account was, before the check existed, a plain
    /// RecordReceipt: a retry across the upgrade must still match what was recorded.
    #[test]
    fn a_receipt_naming_its_special_account_matches_what_it_hashed_to_before() {
        let special = Uuid::now_v7();
        let before = receipt(None, "1.00").content_hash();
        let now = receipt(Some(special), "1.00");
        assert_ne!(now.content_hash(), before);
        assert_eq!(now.earlier_hash(), Some(before));
        // Other content is another request, under either form.
        assert_ne!(receipt(Some(special), "2.00").earlier_hash(), Some(before));
        assert_eq!(receipt(None, "1.00").earlier_hash(), None);
    }
}
