//! Message size limits per RPC. tonic sets one decoding limit per service; CaseLedger
//! needs two: 1 MiB for every single request (nothing legitimate comes near it, and a
//! small limit bounds what a bad client can make the server decode) and 16 MiB for
//! RecordReceipts, whose 10,000 items can weigh that much. This service routes each
//! call to one of two CaseLedgerServers over the same handlers, differing only there.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::NamedService;

use super::pb::case_ledger_server::CaseLedgerServer;
use super::CaseLedgerService;

const RECORD_RECEIPTS_PATH: &str = "/case_escrow.v1.CaseLedger/RecordReceipts";

#[derive(Clone)]
pub struct CaseLedgerWithLimits {
    single: CaseLedgerServer<CaseLedgerService>,
    batch: CaseLedgerServer<CaseLedgerService>,
}

impl CaseLedgerWithLimits {
    pub fn new(service: CaseLedgerService, single_max: usize, batch_max: usize) -> Self {
        let service = Arc::new(service);
        CaseLedgerWithLimits {
            single: CaseLedgerServer::from_arc(service.clone())
                .max_decoding_message_size(single_max),
            batch: CaseLedgerServer::from_arc(service).max_decoding_message_size(batch_max),
        }
    }
}

impl NamedService for CaseLedgerWithLimits {
    const NAME: &'static str = <CaseLedgerServer<CaseLedgerService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for CaseLedgerWithLimits
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both inner servers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == RECORD_RECEIPTS_PATH {
            self.batch.call(request)
        } else {
            self.single.call(request)
        }
    }
}
