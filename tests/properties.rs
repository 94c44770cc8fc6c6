//! Property tests of the posting rules over random sequences of operations, on the
//! in-memory state: every invariant of design.md §5 holds after every sequence, a
//! refused request changes nothing, a retried one changes nothing, and replaying the
//! journal into a fresh state reproduces every balance.

use case_escrow::domain::{
    Amount, BankDetails, BankRef, CaseNumber, ClosureMethod, CourtCode, Date, DeferralReason, Fen,
    Micros, Party, Payee, Purpose, RequestId, Text,
};
use case_escrow::ledger::{
    self, invariants, CaseKey, Command, Context, LedgerError, MemState, Request, UnmatchedKey,
};
use proptest::prelude::*;
use uuid::Uuid;

const CASES: u32 = 4;

#[derive(Debug, Clone)]
enum Action {
    Receipt {
        case: u32,
        fen: i64,
        bank_ref: u32,
    },
    Request {
        case: u32,
        fen: i64,
    },
    Approve {
        d: usize,
    },
    Reject {
        d: usize,
    },
    Cancel {
        d: usize,
    },
    Pay {
        d: usize,
        bank_ref: u32,
    },
    Fail {
        d: usize,
    },
    Return {
        d: usize,
        bank_ref: u32,
    },
    Transfer {
        from: u32,
        to: u32,
        fen: i64,
    },
    Reverse {
        back: u64,
    },
    Close {
        case: u32,
    },
    Retry {
        back: usize,
    },
    Unidentified {
        fen: i64,
        bank_ref: u32,
    },
    /// RecordReceipt with to_suspense_if_unmatched; `case` beyond CASES is unknown,
    /// and `mistyped` spoils the check digits.
    ReceiptOrSuspense {
        case: u32,
        mistyped: bool,
        fen: i64,
        bank_ref: u32,
    },
    Assign {
        u: usize,
        case: u32,
    },
    ReturnUnidentified {
        u: usize,
        bank_ref: Option<u32>,
    },
    Defer {
        case: u32,
    },
    EndDeferral {
        d: usize,
    },
    ApproveDeferral {
        d: usize,
    },
    RejectDeferral {
        d: usize,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let case = 0..CASES;
    let fen = 1i64..50_000;
    prop_oneof![
        4 => (case.clone(), fen.clone(), 0u32..40).prop_map(|(case, fen, bank_ref)| Action::Receipt { case, fen, bank_ref }),
        3 => (case.clone(), fen.clone()).prop_map(|(case, fen)| Action::Request { case, fen }),
        2 => (0usize..20).prop_map(|d| Action::Approve { d }),
        1 => (0usize..20).prop_map(|d| Action::Reject { d }),
        1 => (0usize..20).prop_map(|d| Action::Cancel { d }),
        2 => (0usize..20, 0u32..40).prop_map(|(d, bank_ref)| Action::Pay { d, bank_ref }),
        1 => (0usize..20).prop_map(|d| Action::Fail { d }),
        1 => (0usize..20, 0u32..40).prop_map(|(d, bank_ref)| Action::Return { d, bank_ref }),
        2 => (case.clone(), case.clone(), fen).prop_map(|(from, to, fen)| Action::Transfer { from, to, fen }),
        1 => (0u64..30).prop_map(|back| Action::Reverse { back }),
        1 => case.prop_map(|case| Action::Close { case }),
        1 => (0usize..30).prop_map(|back| Action::Retry { back }),
        2 => (1i64..50_000, 0u32..40).prop_map(|(fen, bank_ref)| Action::Unidentified { fen, bank_ref }),
        2 => (0..CASES + 2, any::<bool>(), 1i64..50_000, 0u32..40).prop_map(|(case, mistyped, fen, bank_ref)| Action::ReceiptOrSuspense { case, mistyped, fen, bank_ref }),
        2 => (0usize..20, 0..CASES).prop_map(|(u, case)| Action::Assign { u, case }),
        1 => (0usize..20, proptest::option::of(0u32..40)).prop_map(|(u, bank_ref)| Action::ReturnUnidentified { u, bank_ref }),
        1 => (0..CASES).prop_map(|case| Action::Defer { case }),
        1 => (0usize..20).prop_map(|d| Action::EndDeferral { d }),
        1 => (0usize..20).prop_map(|d| Action::ApproveDeferral { d }),
        1 => (0usize..20).prop_map(|d| Action::RejectDeferral { d }),
    ]
}

fn text(s: &str) -> Text {
    Text::required(s, 200).expect("valid text")
}

fn case_number(i: u32) -> CaseNumber {
    CaseNumber::parse(&format!("（2024）云0102执{}号", i + 1)).expect("valid case number")
}

fn amount(fen: i64) -> Amount {
    Amount::from_fen(fen).expect("positive amount")
}

struct World {
    state: MemState,
    clock: i64,
    next_request: u64,
    disbursements: Vec<Uuid>,
    unidentified: Vec<Uuid>,
    deferrals: Vec<Uuid>,
    special_id: Uuid,
    accepted: Vec<Request>,
}

impl World {
    fn new() -> World {
        World {
            state: MemState::default(),
            clock: 1_710_000_000_000_000,
            next_request: 0,
            disbursements: Vec::new(),
            unidentified: Vec::new(),
            deferrals: Vec::new(),
            special_id: Uuid::nil(),
            accepted: Vec::new(),
        }
    }

    fn run(&mut self, command: Command) -> Result<u64, LedgerError> {
        self.next_request += 1;
        let request = Request {
            id: RequestId::parse(&format!("req-{}", self.next_request)).expect("valid id"),
            command,
            principal: None,
        };
        self.submit(request)
    }

    fn submit(&mut self, request: Request) -> Result<u64, LedgerError> {
        self.clock += 1_000;
        let ctx = Context {
            now: Micros(self.clock),
            new_id: Uuid::now_v7(),
            tiers: Default::default(),
        };
        let before = self.state.clone();
        match ledger::execute(&mut self.state, &request, &ctx) {
            Ok((outcome, entry)) => {
                match entry {
                    None => {
                        assert!(outcome.existing);
                        assert_eq!(before, self.state, "an existing outcome changed the state");
                    }
                    Some(entry) => {
                        // Found by its bank reference under a new request id: an entry
                        // that moves nothing binds the id to the original.
                        if outcome.existing {
                            assert!(
                                matches!(entry.op, case_escrow::domain::Op::AlreadyRecorded { original, .. } if original == outcome.sequence),
                                "{entry:?}"
                            );
                            assert!(entry.postings.is_empty());
                            assert_eq!(before.cases, self.state.cases, "a repeat moved money");
                        }
                        self.accepted.push(request);
                    }
                }
                Ok(outcome.sequence)
            }
            Err(e) => {
                assert!(matches!(e, LedgerError::Domain(_)), "fault: {e}");
                assert_eq!(
                    before, self.state,
                    "a refused request changed the state: {e}"
                );
                Err(e)
            }
        }
    }

    fn setup(&mut self) -> Uuid {
        let seq = self
            .run(Command::OpenSpecialAccount {
                court: CourtCode::parse("云0102").expect("court"),
                bank: BankDetails {
                    bank_name: text("中国工商银行"),
                    bank_branch: text("五华支行"),
                    account_number: text("2502010009200012345"),
                    account_name: text("执行款专户"),
                },
                document_ref: text("doc"),
            })
            .expect("opens");
        let special_id = *self.state.specials.keys().next().expect("special exists");
        self.special_id = special_id;
        assert_eq!(seq, 1);
        for i in 0..CASES {
            self.run(Command::OpenCaseAccount {
                special_id,
                case_number: case_number(i),
                target: Fen(1_000_000),
                applicants: vec![Party {
                    name: text("张三"),
                    payee_account: text("6222"),
                    payee_bank: text("建行"),
                }],
                respondents: vec![Party {
                    name: text("李四"),
                    payee_account: Text::default(),
                    payee_bank: Text::default(),
                }],
            })
            .expect("case opens");
        }
        special_id
    }

    fn disbursement(&self, d: usize) -> Uuid {
        self.disbursements
            .get(d % self.disbursements.len().max(1))
            .copied()
            .unwrap_or_else(Uuid::nil)
    }

    fn pick(ids: &[Uuid], i: usize) -> Uuid {
        ids.get(i % ids.len().max(1))
            .copied()
            .unwrap_or_else(Uuid::nil)
    }

    fn act(&mut self, action: &Action) {
        let bank_ref = |n: u32| BankRef::parse(&format!("B{n}")).expect("ref");
        let command = match action {
            Action::Receipt {
                case,
                fen,
                bank_ref: r,
            } => Command::RecordReceipt(case_escrow::ledger::Receipt {
                case: CaseKey::Number(case_number(*case)),
                amount: amount(*fen),
                payer_name: text("李四"),
                payer_account: text("6217"),
                bank_ref: bank_ref(*r),
                value_date: Date::parse("2024-03-01").expect("date"),
            }),
            Action::Request { case, fen } => Command::RequestDisbursement {
                case_number: case_number(*case),
                amount: amount(*fen),
                payee: Payee {
                    name: text("张三"),
                    account: text("6222"),
                    bank: text("建行"),
                },
                purpose: Purpose::ToApplicant,
                memo: Text::default(),
                exception_reason: Text::default(),
            },
            Action::Approve { d } => Command::ApproveDisbursement {
                disbursement_id: self.disbursement(*d),
                approval_ref: text("批"),
            },
            Action::Reject { d } => Command::RejectDisbursement {
                disbursement_id: self.disbursement(*d),
                reason: text("驳回"),
            },
            Action::Cancel { d } => Command::CancelDisbursement {
                disbursement_id: self.disbursement(*d),
                reason: text("撤回"),
            },
            Action::Pay { d, bank_ref: r } => Command::ConfirmDisbursementPaid {
                disbursement_id: self.disbursement(*d),
                bank_ref: bank_ref(1000 + r),
                paid_at: None,
            },
            Action::Fail { d } => Command::FailDisbursement {
                disbursement_id: self.disbursement(*d),
                reason: text("失败"),
            },
            Action::Return { d, bank_ref: r } => Command::RecordReturnedPayment {
                disbursement_id: self.disbursement(*d),
                bank_ref: bank_ref(2000 + r),
                reason: text("退回"),
            },
            Action::Transfer { from, to, fen } => Command::TransferBetweenCases {
                from: case_number(*from),
                to: case_number(*to),
                amount: amount(*fen),
                reason: text("调账"),
                document_ref: Text::default(),
            },
            Action::Reverse { back } => Command::ReverseEntry {
                sequence: self
                    .state
                    .meta
                    .next_sequence
                    .saturating_sub(1 + back)
                    .max(1),
                reason: text("冲正"),
            },
            Action::Close { case } => Command::CloseCaseAccount {
                case_number: case_number(*case),
                method: ClosureMethod::Completed,
                reason: text("结案"),
            },
            Action::Unidentified { fen, bank_ref: r } => Command::RecordUnidentifiedReceipt {
                special_id: self.special_id,
                amount: amount(*fen),
                payer_name: text("王五"),
                payer_account: text("6217"),
                bank_ref: bank_ref(3000 + r),
                value_date: Date::parse("2024-03-01").expect("date"),
                memo: Text::default(),
            },
            Action::ReceiptOrSuspense {
                case,
                mistyped,
                fen,
                bank_ref: r,
            } => {
                let van = self
                    .state
                    .cases
                    .values()
                    .find(|c| c.case_number == case_number(*case))
                    .map(|c| c.van.to_string())
                    .unwrap_or_else(|| {
                        case_escrow::domain::VirtualAccountNumber::issue(1, 900 + u64::from(*case))
                            .to_string()
                    });
                let account = if *mistyped {
                    let mut typo = van.into_bytes();
                    typo[15] = if typo[15] == b'0' { b'1' } else { b'0' };
                    UnmatchedKey::Unreadable(text(&String::from_utf8(typo).expect("digits")))
                } else {
                    UnmatchedKey::Van(
                        case_escrow::domain::VirtualAccountNumber::parse(&van).expect("van"),
                    )
                };
                Command::RecordReceiptOrSuspense {
                    special_id: self.special_id,
                    account,
                    amount: amount(*fen),
                    payer_name: text("李四"),
                    payer_account: text("6217"),
                    bank_ref: bank_ref(4000 + r),
                    value_date: Date::parse("2024-03-02").expect("date"),
                }
            }
            Action::Assign { u, case } => Command::AssignUnidentifiedReceipt {
                receipt_id: Self::pick(&self.unidentified, *u),
                case_number: case_number(*case),
            },
            Action::ReturnUnidentified { u, bank_ref: r } => Command::ReturnUnidentifiedReceipt {
                receipt_id: Self::pick(&self.unidentified, *u),
                reason: text("退回"),
                bank_ref: r.map(|r| bank_ref(5000 + r)),
            },
            Action::Defer { case } => Command::RecordDeferral {
                case_number: case_number(*case),
                reason: DeferralReason::Distribution,
                approval_ref: text("批"),
                note: Text::default(),
            },
            Action::EndDeferral { d } => Command::EndDeferral {
                deferral_id: Self::pick(&self.deferrals, *d),
            },
            Action::ApproveDeferral { d } => Command::ApproveDeferral {
                deferral_id: Self::pick(&self.deferrals, *d),
            },
            Action::RejectDeferral { d } => Command::RejectDeferral {
                deferral_id: Self::pick(&self.deferrals, *d),
                reason: text("理由不足"),
            },
            Action::Retry { back } => {
                if self.accepted.is_empty() {
                    return;
                }
                let i = self.accepted.len() - 1 - back % self.accepted.len();
                let request = self.accepted[i].clone();
                let entries = self.state.entries.len();
                let seq = self
                    .submit(request)
                    .expect("a retry of an accepted request succeeds");
                assert!(seq as usize <= entries);
                assert_eq!(self.state.entries.len(), entries, "a retry wrote an entry");
                return;
            }
        };
        let requested = matches!(action, Action::Request { .. });
        if let Ok(seq) = self.run(command) {
            use case_escrow::domain::Op;
            match self.state.entries[&seq].op {
                Op::DisbursementRequested {
                    disbursement_id, ..
                } if requested => self.disbursements.push(disbursement_id),
                Op::UnidentifiedReceiptRecorded { receipt_id, .. }
                    if !self.unidentified.contains(&receipt_id) =>
                {
                    self.unidentified.push(receipt_id)
                }
                Op::DeferralRequested { deferral_id, .. } => self.deferrals.push(deferral_id),
                _ => {}
            }
        }
        // Cheap invariants after every step; the full check (with replay) at the end.
        for case in self.state.cases.values() {
            assert!(
                !case.balances.available().is_negative(),
                "negative available"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_any_sequence(actions in proptest::collection::vec(action(), 1..120)) {
        let mut world = World::new();
        world.setup();
        for a in &actions {
            world.act(a);
        }
        if let Err(why) = invariants::check(&world.state) {
            panic!("{why}");
        }
        // Replaying the journal into a fresh state gives every balance exactly.
        let replayed = MemState::replay(world.state.entries.values()).expect("replays");
        prop_assert_eq!(&replayed.cases, &world.state.cases);
        prop_assert_eq!(&replayed.specials, &world.state.specials);
        prop_assert_eq!(&replayed.case_facts, &world.state.case_facts);
    }
}

#[test]
fn a_reversal_that_would_overdraw_is_refused() {
    let mut world = World::new();
    world.setup();
    world.act(&Action::Receipt {
        case: 0,
        fen: 10_000,
        bank_ref: 1,
    });
    let receipt_seq = world.state.meta.next_sequence - 1;
    world.act(&Action::Request {
        case: 0,
        fen: 8_000,
    });
    let refused = world.run(Command::ReverseEntry {
        sequence: receipt_seq,
        reason: text("冲正"),
    });
    assert!(
        matches!(refused, Err(LedgerError::Domain(_))),
        "{refused:?}"
    );
    invariants::check(&world.state).expect("invariants");
}

/// Guards the generator: a long random run must reach every kind of entry, or the
/// property above would be checking less than it claims.
#[test]
fn random_runs_reach_every_kind_of_entry() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    // Fresh worlds, so that closing a case (which needs it empty) stays likely: the
    // kinds seen over a few runs must cover every kind.
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let actions = proptest::collection::vec(action(), 1000)
            .new_tree(&mut runner)
            .expect("generates")
            .current();
        let mut world = World::new();
        world.setup();
        for a in &actions {
            world.act(a);
        }
        invariants::check(&world.state).expect("invariants");
        for e in world.state.entries.values() {
            use case_escrow::domain::Op;
            let kind = match &e.op {
                Op::DisbursementMoved { to, .. } => format!("{to:?}"),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            };
            kinds.insert(kind);
        }
    }
    for want in [
        "Receipt",
        "DisbursementRequested",
        "Approved",
        "Rejected",
        "Cancelled",
        "Paid",
        "Failed",
        "Returned",
        "Transfer",
        "Reversal",
        "CaseAccountClosed",
        "UnidentifiedReceiptRecorded",
        "UnidentifiedReceiptAssigned",
        "UnidentifiedReceiptReturned",
        "DeferralRequested",
        "DeferralApproved",
        "DeferralRejected",
        "DeferralEnded",
        "AlreadyRecorded",
    ] {
        assert!(kinds.contains(want), "no {want} in {kinds:?}");
    }
}

impl World {
    fn run_as(&mut self, command: Command, principal: Uuid) -> Result<u64, LedgerError> {
        self.next_request += 1;
        self.submit(Request {
            id: RequestId::parse(&format!("req-{}", self.next_request)).expect("valid id"),
            command,
            principal: Some(principal),
        })
    }

    /// A principal with every role and an approval level.
    fn principal(&mut self, n: usize, level: u8) -> Uuid {
        use case_escrow::domain::Role;
        let seq = self
            .run(Command::AddPrincipal {
                name: text(&format!("p{n}")),
                roles: Role::ALL.to_vec(),
                courts: vec![CourtCode::parse("云0102").expect("court")],
                supervises: Vec::new(),
                approval_level: level,
                token_hash: [n as u8; 32],
                cert_sha256: None,
            })
            .expect("added");
        let entry = self.state.entries.get(&seq).expect("entry");
        match entry.op {
            case_escrow::domain::Op::PrincipalAdded { principal_id, .. } => principal_id,
            _ => panic!("entry {seq} added no principal"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whoever approves did not request, holds the level the amount's tier needs
    /// (¥100,000 by default), and whoever confirms the payment did neither; a
    /// refusal changes nothing (checked by `submit`).
    #[test]
    fn four_eyes_and_tiers_hold_for_any_three_principals(
        levels in proptest::collection::vec(1u8..=2, 3),
        requester in 0usize..3,
        approver in 0usize..3,
        confirmer in 0usize..3,
        fen in prop_oneof![1i64..10_000_000, 9_999_999i64..=10_000_001, 10_000_000i64..=20_000_000],
    ) {
        let mut world = World::new();
        world.setup();
        let ids: Vec<Uuid> = (0..3).map(|n| world.principal(n, levels[n])).collect();
        world
            .run(Command::RecordReceipt(case_escrow::ledger::Receipt {
                case: CaseKey::Number(case_number(0)),
                amount: amount(30_000_000),
                payer_name: text("李四"),
                payer_account: text("6217"),
                bank_ref: BankRef::parse("FUND").expect("ref"),
                value_date: Date::parse("2024-03-01").expect("date"),
            }))
            .expect("funded");
        world
            .run_as(
                Command::RequestDisbursement {
                    case_number: case_number(0),
                    amount: amount(fen),
                    payee: Payee {
                        name: text("张三"),
                        account: text("6222"),
                        bank: text("建行"),
                    },
                    purpose: Purpose::ToApplicant,
                    memo: Text::default(),
                    exception_reason: Text::default(),
                },
                ids[requester],
            )
            .expect("requested");
        let d = *world.state.disbursements.keys().next().expect("disbursement");
        let needed = if fen >= 10_000_000 { 2 } else { 1 };
        let approved = world.run_as(
            Command::ApproveDisbursement { disbursement_id: d, approval_ref: text("批") },
            ids[approver],
        );
        let may_approve = approver != requester && levels[approver] >= needed;
        prop_assert_eq!(approved.is_ok(), may_approve, "{:?}", approved);
        if let Err(e) = &approved {
            prop_assert!(matches!(
                e,
                LedgerError::Domain(case_escrow::domain::DomainError::Forbidden(_))
            ));
        }
        if may_approve {
            let paid = world.run_as(
                Command::ConfirmDisbursementPaid {
                    disbursement_id: d,
                    bank_ref: BankRef::parse("PAID").expect("ref"),
                    paid_at: None,
                },
                ids[confirmer],
            );
            prop_assert_eq!(paid.is_ok(), confirmer != requester && confirmer != approver);
        }
        // A deferral: whoever approves it did not record it (no tier: it moves no money).
        let recorded = world
            .run_as(
                Command::RecordDeferral {
                    case_number: case_number(1),
                    reason: DeferralReason::Frozen,
                    approval_ref: text("冻结裁定"),
                    note: Text::default(),
                },
                ids[requester],
            )
            .expect("recorded");
        let deferral_id = match world.state.entries[&recorded].op {
            case_escrow::domain::Op::DeferralRequested { deferral_id, .. } => deferral_id,
            ref other => panic!("entry {recorded} is {other:?}"),
        };
        let approved = world.run_as(Command::ApproveDeferral { deferral_id }, ids[approver]);
        prop_assert_eq!(approved.is_ok(), approver != requester, "{:?}", approved);
        if let Err(e) = &approved {
            prop_assert!(matches!(
                e,
                LedgerError::Domain(case_escrow::domain::DomainError::Forbidden(_))
            ));
        }
        let case = world.state.cases.values().find(|c| c.case_number == case_number(1)).expect("case");
        prop_assert_eq!(case.clock.active_deferrals, u32::from(approver != requester));
        invariants::check(&world.state).expect("invariants hold");
        let replayed = MemState::replay(world.state.entries.values()).expect("replays");
        prop_assert_eq!(replayed, world.state);
    }
}

/// A deferral journaled before approvals moved into the service (`DeferralRecorded`)
/// replays as approved when recorded: it holds the limit back, and ends like any
/// approved deferral, from which day the after-deferral limit counts.
#[test]
fn a_deferral_journaled_before_approvals_replays_as_approved() {
    use case_escrow::domain::{DeferralStatus, Entry, Op};
    let mut world = World::new();
    world.setup();
    let case = world
        .state
        .cases
        .values()
        .find(|c| c.case_number == case_number(0))
        .expect("case")
        .clone();
    let deferral_id = Uuid::now_v7();
    world.clock += 1_000;
    let legacy = Entry {
        sequence: world.state.meta.next_sequence,
        request_id: RequestId::parse("legacy-deferral").expect("id"),
        request_hash: [7; 32],
        recorded_at: Micros(world.clock),
        op: Op::DeferralRecorded {
            deferral_id,
            case_id: case.id,
            special_id: case.special_id,
            case_number: case.case_number.clone(),
            reason: DeferralReason::Suspended,
            approval_ref: text("暂缓审批2023-9"),
            note: Text::default(),
        },
        postings: Vec::new(),
        principal: None,
    };
    let mut entries: Vec<Entry> = world.state.entries.values().cloned().collect();
    entries.push(legacy);
    world.state = MemState::replay(entries.iter()).expect("an old journal replays");
    let d = &world.state.deferrals[&deferral_id];
    assert_eq!(d.status(), DeferralStatus::Active);
    assert_eq!(d.decision.as_ref().and_then(|x| x.by), None);
    assert_eq!(world.state.cases[&case.id].clock.active_deferrals, 1);
    invariants::check(&world.state).expect("invariants");
    // Approving it again is a rule refusal, ending it works once.
    let again = world.run(Command::ApproveDeferral { deferral_id });
    assert!(matches!(again, Err(LedgerError::Domain(_))), "{again:?}");
    world
        .run(Command::EndDeferral { deferral_id })
        .expect("an approved deferral ends");
    let clock = world.state.cases[&case.id].clock;
    assert_eq!(clock.active_deferrals, 0);
    assert!(clock.deferral_ended_on.is_some());
    invariants::check(&world.state).expect("invariants");
}

/// A deferral awaiting approval, or rejected, holds nothing back and cannot end; the
/// after-deferral limit counts only from the end of an approved one.
#[test]
fn only_an_approved_deferral_holds_the_limit_back() {
    let mut world = World::new();
    world.setup();
    let record = |world: &mut World| {
        let seq = world
            .run(Command::RecordDeferral {
                case_number: case_number(0),
                reason: DeferralReason::Distribution,
                approval_ref: text("分配方案"),
                note: Text::default(),
            })
            .expect("recorded");
        match world.state.entries[&seq].op {
            case_escrow::domain::Op::DeferralRequested { deferral_id, .. } => deferral_id,
            ref other => panic!("{other:?}"),
        }
    };
    let clock = |world: &World| {
        world
            .state
            .cases
            .values()
            .find(|c| c.case_number == case_number(0))
            .expect("case")
            .clock
    };
    let pending = record(&mut world);
    assert_eq!(clock(&world).active_deferrals, 0);
    let refused = world.run(Command::EndDeferral {
        deferral_id: pending,
    });
    assert!(
        matches!(refused, Err(LedgerError::Domain(_))),
        "{refused:?}"
    );
    world
        .run(Command::RejectDeferral {
            deferral_id: pending,
            reason: text("不符合条件"),
        })
        .expect("rejected");
    assert_eq!(clock(&world).active_deferrals, 0);
    assert_eq!(clock(&world).deferral_ended_on, None);
    for refused in [
        world.run(Command::ApproveDeferral {
            deferral_id: pending,
        }),
        world.run(Command::EndDeferral {
            deferral_id: pending,
        }),
    ] {
        assert!(
            matches!(refused, Err(LedgerError::Domain(_))),
            "{refused:?}"
        );
    }
    let approved = record(&mut world);
    world
        .run(Command::ApproveDeferral {
            deferral_id: approved,
        })
        .expect("approved");
    assert_eq!(clock(&world).active_deferrals, 1);
    world
        .run(Command::EndDeferral {
            deferral_id: approved,
        })
        .expect("ends");
    assert_eq!(clock(&world).active_deferrals, 0);
    assert!(clock(&world).deferral_ended_on.is_some());
    invariants::check(&world.state).expect("invariants");
}
