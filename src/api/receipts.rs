//! RecordReceipts: a backlog of bank notifications in one call.
//!
//! Each item is its own request, with its own request_id and its own outcome, exactly
//! as if it had come through RecordReceipt; a bad item never blocks the others (a
//! day's notifications must not wait for one mistyped case number). All items go to
//! the writer as one message, so they share one `fdatasync` (or a few, if their frames
//! outgrow one batch), and nothing is answered before all of them are durable.

use tonic::{Code, Status};

use crate::domain::text::len;
use crate::ledger::{self, Command};
use crate::store::{Reply, StoreHandle};

use super::authz::{self, Caller, Scoped};
use super::convert as cv;
use super::error;
use super::pb;

/// The most receipts one call takes. 10,000 typical receipts are about 1.5 MB on the
/// wire and one or two batches of the writer.
pub const RECEIPTS_PER_CALL_MAX: usize = 10_000;

/// The largest RecordReceipts message: 10,000 items with every text field at its
/// longest. Only RecordReceipts gets it (see `limits`); every other call keeps the
/// server's 1 MiB.
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Validates a receipt exactly as RecordReceipt does.
pub(super) fn command(r: &pb::RecordReceiptRequest) -> Result<Command, Status> {
    use pb::record_receipt_request::Account as A;
    // Routing to suspense is RecordReceipt's alone for now; ignoring the switch here
    // would quietly refuse money the caller meant to park.
    if r.to_suspense_if_unmatched {
        return Err(Status::invalid_argument(
            "to_suspense_if_unmatched: not supported by RecordReceipts; send such receipts with RecordReceipt",
        ));
    }
    let case = match r.account.as_ref() {
        Some(A::CaseNumber(n)) => ledger::CaseKey::Number(cv::case_number("case_number", n)?),
        Some(A::VirtualAccountNumber(v)) => {
            ledger::CaseKey::Van(cv::van("virtual_account_number", v)?)
        }
        None => {
            return Err(Status::invalid_argument(
                "case_number: case_number or virtual_account_number is required",
            ))
        }
    };
    let receipt = ledger::Receipt {
        case,
        amount: cv::amount("amount", &r.amount)?,
        payer_name: cv::required("payer_name", &r.payer_name, len::NAME)?,
        payer_account: cv::optional("payer_account", &r.payer_account, len::ACCOUNT)?,
        bank_ref: cv::bank_ref("bank_ref", &r.bank_ref)?,
        value_date: cv::date("value_date", &r.value_date)?,
    };
    // Named, the special account the money arrived at is checked against the case's;
    // not named, the case's own is taken, as it always was (and hashed as before).
    Ok(match r.special_account_id.as_str() {
        "" => Command::RecordReceipt(receipt),
        id => Command::RecordReceiptAt {
            special_id: cv::id("special_account_id", id)?,
            receipt,
        },
    })
}

fn request(caller: &Caller, r: &pb::RecordReceiptRequest) -> Result<ledger::Request, Status> {
    Ok(ledger::Request {
        id: cv::request_id(&r.request_id)?,
        command: command(r)?,
        principal: Some(caller.principal.id),
    })
}

/// Each item's scope refusal, if any. An item naming a case outside the caller's
/// courts, or a virtual account number that names nothing, is refused on its own
/// (PERMISSION_DENIED, worded alike for both, so that no item tells whether another
/// court's account exists) and the others are recorded: a bank's day of notifications
/// for the special account often carries a few that are not this court's, and they
/// must not hold up the rest. To a caller who may read every court an unknown number
/// is the ledger's NOT_FOUND instead. (Malformed items get their own item errors.)
fn scope_refusals(
    store: &StoreHandle,
    caller: &Caller,
    items: &[pb::RecordReceiptRequest],
) -> Result<Vec<Option<Status>>, Status> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item.scopes(&store.reads) {
            Ok(scopes) => authz::within(caller, &scopes).err(),
            Err(s) if s.code() == Code::InvalidArgument => None,
            // A fault of the store must not let an item through unchecked.
            Err(s) => return Err(s),
        });
    }
    Ok(out)
}

/// A refusal of item `i`, its field names prefixed so the client knows which item and
/// which field: `receipts[17].amount: ...`; other refusals name the item only.
fn item_error(i: usize, status: &Status) -> pb::ReceiptResult {
    let message = if status.code() == Code::InvalidArgument {
        format!("receipts[{i}].{}", status.message())
    } else {
        format!("receipts[{i}]: {}", status.message())
    };
    pb::ReceiptResult {
        result: Some(pb::receipt_result::Result::Error(pb::ItemError {
            code: status.code() as i32,
            message,
        })),
    }
}

fn item_ok(sequence: u64) -> pb::ReceiptResult {
    pb::ReceiptResult {
        result: Some(pb::receipt_result::Result::Sequence(sequence)),
    }
}

pub(super) async fn record_receipts(
    store: &StoreHandle,
    caller: &Caller,
    r: pb::RecordReceiptsRequest,
) -> Result<pb::RecordReceiptsResponse, Status> {
    if !r.request_id.is_empty() {
        cv::request_id(&r.request_id)?;
    }
    match r.receipts.len() {
        0 => {
            return Err(Status::invalid_argument(
                "receipts: at least one receipt is required",
            ))
        }
        n if n > RECEIPTS_PER_CALL_MAX => {
            return Err(Status::invalid_argument(format!(
                "receipts: at most {RECEIPTS_PER_CALL_MAX} per call, got {n}; split the backlog"
            )))
        }
        _ => {}
    }
    let refusals = scope_refusals(store, caller, &r.receipts)?;
    // Items out of scope or malformed are answered here and never reach the writer;
    // the rest go to it together, and their outcomes are put back in place.
    let mut results: Vec<Option<pb::ReceiptResult>> = Vec::with_capacity(r.receipts.len());
    let mut valid = Vec::with_capacity(r.receipts.len());
    for (i, (item, refused)) in r.receipts.iter().zip(refusals).enumerate() {
        if let Some(status) = refused {
            results.push(Some(item_error(i, &status)));
            continue;
        }
        match request(caller, item) {
            Ok(req) => {
                valid.push(req);
                results.push(None);
            }
            Err(status) => results.push(Some(item_error(i, &status))),
        }
    }
    let replies: Vec<Reply> = if valid.is_empty() {
        Vec::new()
    } else {
        store
            .write_many_durable(valid)
            .await
            .map_err(error::write)?
    };
    let mut replies = replies.into_iter();
    let mut out = Vec::with_capacity(results.len());
    for (i, result) in results.into_iter().enumerate() {
        let result = match result {
            Some(refused) => refused,
            None => match replies.next() {
                Some(Ok(outcome)) => item_ok(outcome.sequence),
                Some(Err(e)) => item_error(i, &error::write(e)),
                None => item_error(
                    i,
                    &Status::internal("internal error: the writer answered fewer items"),
                ),
            },
        };
        out.push(result);
    }
    Ok(pb::RecordReceiptsResponse { results: out })
}
