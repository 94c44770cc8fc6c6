//! Criterion benchmarks of the hot paths of a receipt: parsing its case number,
//! hashing the request, posting it (decide + apply), framing its journal entry, and
//! the writer's batch (decide, append, fdatasync, sled apply) through the store.
//!
//! `cargo bench --bench hot_paths`; numbers and how to read them are in BENCHMARKS.md.
//! Kept small so that `cargo clippy --all-targets` (CI) compiles it quickly.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use uuid::Uuid;

use case_escrow::domain::{
    Amount, BankDetails, BankRef, CaseNumber, CourtCode, Date, Fen, Micros, Party, RequestId, Text,
};
use case_escrow::ledger::{self, CaseKey, Command, Context, MemState, Request, State};
use case_escrow::store::{journal, Store};

fn text(s: &str) -> Text {
    Text::optional(s, 1000).expect("valid text")
}

fn request(id: &str, command: Command) -> Request {
    Request {
        id: RequestId::parse(id).expect("valid request id"),
        command,
        principal: None,
    }
}

fn ctx(i: u64) -> Context {
    Context {
        now: Micros(1_710_000_000_000_000 + i as i64),
        new_id: Uuid::from_u128(u128::from(i) + 1),
        tiers: Default::default(),
    }
}

fn receipt(case: &CaseNumber, i: u64) -> Request {
    request(
        &format!("bench-r{i}"),
        Command::RecordReceipt(case_escrow::ledger::Receipt {
            case: CaseKey::Number(case.clone()),
            amount: Amount::parse("1234.50").expect("valid amount"),
            payer_name: text("某某贸易有限公司"),
            payer_account: text("6217000000000000001"),
            bank_ref: BankRef::parse(&format!("ICBC2024{i:012}")).expect("valid bank ref"),
            value_date: Date::parse("2024-03-01").expect("valid date"),
        }),
    )
}

fn open_special() -> Request {
    request(
        "bench-special",
        Command::OpenSpecialAccount {
            court: CourtCode::parse("云0102").expect("valid court"),
            bank: BankDetails {
                bank_name: text("中国工商银行"),
                bank_branch: text("昆明五华支行"),
                account_number: text("2502010009200012345"),
                account_name: text("五华区人民法院执行款专户"),
            },
            document_ref: text("云高法〔2018〕35号"),
        },
    )
}

fn open_case(special_id: Uuid, case: &CaseNumber) -> Request {
    request(
        "bench-case",
        Command::OpenCaseAccount {
            special_id,
            case_number: case.clone(),
            target: Fen(10_000_000),
            applicants: vec![Party {
                name: text("张三"),
                payee_account: text("6222020200012345678"),
                payee_bank: text("中国建设银行昆明分行"),
            }],
            respondents: vec![Party {
                name: text("某某贸易有限公司"),
                payee_account: text(""),
                payee_bank: text(""),
            }],
        },
    )
}

fn case_number() -> CaseNumber {
    CaseNumber::parse("（2024）云0102执1号").expect("valid case number")
}

/// A ledger with one special account and one case account, in memory.
fn ledger() -> (MemState, CaseNumber) {
    let mut state = MemState::default();
    let (_, entry) = ledger::execute(&mut state, &open_special(), &ctx(0)).expect("opens");
    let special_id = entry.map(|e| e.special_id()).expect("a new entry");
    let case = case_number();
    ledger::execute(&mut state, &open_case(special_id, &case), &ctx(1)).expect("case opens");
    (state, case)
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("case_number_fullwidth", |b| {
        b.iter(|| CaseNumber::parse(black_box("（2018）云0102执123号")))
    });
    g.bench_function("case_number_ascii_suffix", |b| {
        b.iter(|| CaseNumber::parse(black_box("(2017)皖1102执恢1059号之一")))
    });
    g.bench_function("amount", |b| b.iter(|| Amount::parse(black_box("1234.50"))));
    g.finish();
}

fn posting_and_encoding(c: &mut Criterion) {
    let (mut state, case) = ledger();
    let mut i = 10u64;
    let sample = receipt(&case, 1);
    c.bench_function("hash/request_content", |b| {
        b.iter(|| black_box(&sample).content_hash())
    });
    c.bench_function("post/receipt_decide_and_apply_in_memory", |b| {
        b.iter_batched(
            || {
                i += 1;
                (receipt(&case, i), ctx(i))
            },
            |(r, cx)| ledger::execute(&mut state, &r, &cx).expect("receipt posts"),
            BatchSize::SmallInput,
        )
    });
    let (_, entry) = ledger::execute(&mut state, &receipt(&case, 0), &ctx(0)).expect("posts");
    let entry = entry.expect("a new entry");
    let mut frame = Vec::with_capacity(1024);
    c.bench_function("journal/encode_receipt_frame", |b| {
        b.iter(|| {
            frame.clear();
            journal::encode_frame(black_box(&entry), &journal::GENESIS, &mut frame)
                .expect("encodes")
        })
    });
    frame.clear();
    journal::encode_frame(&entry, &journal::GENESIS, &mut frame).expect("encodes");
    c.bench_function("journal/decode_receipt_frame", |b| {
        b.iter(|| journal::decode_frame(black_box(&frame)).expect("decodes"))
    });
}

/// The store end to end for one batch: the writer decides the receipts over its
/// overlay, appends their frames, fdatasyncs once and applies one sled batch.
fn writer_batch(c: &mut Criterion) {
    const RECEIPTS: u64 = 1000;
    let dir = tempfile::tempdir().expect("tempdir");
    // Timers too: closing the store bounds its waits with them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let store = Store::open(dir.path()).expect("store opens");
    let handle = store.handle();
    let case = case_number();
    runtime.block_on(async {
        let opened = handle.write(open_special()).await.expect("special opens");
        let special_id = handle
            .reads
            .entry(opened.sequence)
            .expect("reads")
            .expect("the entry is there")
            .special_id();
        handle
            .write(open_case(special_id, &case))
            .await
            .expect("case opens");
    });

    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Elements(RECEIPTS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    let mut next = 0u64;
    g.bench_function("batch_of_1000_receipts_durable", |b| {
        b.iter_batched(
            || {
                let batch: Vec<_> = (next..next + RECEIPTS).map(|i| receipt(&case, i)).collect();
                next += RECEIPTS;
                batch
            },
            |batch| {
                let replies = runtime.block_on(handle.write_many(batch)).expect("writes");
                assert!(replies.iter().all(|r| r.is_ok()));
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    runtime.block_on(store.close());
}

/// sled alone, for scale: one atomic batch of keys shaped like a receipt's derived
/// writes (a 25-byte key in sequence order, a 40-byte value), as the writer applies
/// about five of them an entry.
fn sled_apply(c: &mut Criterion) {
    const KEYS: u64 = 5000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(Some(1000))
        .cache_capacity(256 << 20)
        .open()
        .expect("sled opens");
    let tree = db.open_tree("bench").expect("tree opens");
    let mut g = c.benchmark_group("sled");
    g.throughput(Throughput::Elements(KEYS));
    g.sample_size(10);
    let mut next = 0u64;
    g.bench_function("apply_batch_5000_sequential_keys", |b| {
        b.iter_batched(
            || {
                let mut batch = sled::Batch::default();
                for i in next..next + KEYS {
                    let mut key = vec![b'l'; 17];
                    key.extend_from_slice(&i.to_be_bytes());
                    batch.insert(key, vec![7u8; 40]);
                }
                next += KEYS;
                batch
            },
            |batch| tree.apply_batch(batch).expect("applies"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    parsing,
    posting_and_encoding,
    writer_batch,
    sled_apply
);
criterion_main!(benches);
