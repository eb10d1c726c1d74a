//! Transactions across brokers over the cluster listener: a coordinator's marker writes to
//! partition leaders on other brokers, and partition leaders' KIP-890 verifications with a
//! coordinator on another broker (`wire/src/cluster/txn.rs` has the frames). Core 0 holds the
//! transport: other cores send through it ([`send`]); its inbox loop (`replication::serve_inbox`)
//! delivers answers here and hands peers' requests to [`serve`].

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use spate_wire::cluster::{Body, TxnMarkersResponse, TxnVerifyResponse};
use spate_wire::ErrorCode;
use tracing::{debug, warn};

use super::rpc::Calls;
use super::transport::{Inbound, Transport};
use crate::core::{Core, CONTROLLER_CORE};
use crate::ops::{CoreReply, CoreRequest};
use crate::txn::{TxnPeerAnswer, TxnPeerCall};

/// How long a coordinator waits for a leader's markers (durable on its in-sync replicas) or a
/// leader for a coordinator's verification. A marker write not answered is sent again at the
/// coordinator's next pass.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Calls of each kind in flight from this broker.
const CALLS_IN_FLIGHT_MAX: usize = 1024;
/// Peers' requests served at once; beyond it they are refused (retried by the sender).
const SERVED_MAX: usize = 1024;

/// Core 0's correlation of transaction frames with their answers.
#[derive(Debug)]
pub struct TxnRpc {
    markers: Calls<TxnMarkersResponse>,
    verify: Calls<TxnVerifyResponse>,
    serving: Cell<usize>,
}

impl Default for TxnRpc {
    fn default() -> TxnRpc {
        TxnRpc {
            markers: Calls::new(CALLS_IN_FLIGHT_MAX),
            verify: Calls::new(CALLS_IN_FLIGHT_MAX),
            serving: Cell::new(0),
        }
    }
}

impl TxnRpc {
    /// Sends `call` to broker `to` and waits for its answer; `None` if none came in time.
    pub async fn call(
        &self,
        transport: &Transport,
        to: i32,
        call: TxnPeerCall,
    ) -> Option<TxnPeerAnswer> {
        let answer = match call {
            TxnPeerCall::Markers(request) => self
                .markers
                .call(
                    transport,
                    to,
                    &Body::TxnMarkersRequest(request),
                    ANSWER_TIMEOUT,
                )
                .await
                .map(TxnPeerAnswer::Markers),
            TxnPeerCall::Verify(request) => self
                .verify
                .call(
                    transport,
                    to,
                    &Body::TxnVerifyRequest(request),
                    ANSWER_TIMEOUT,
                )
                .await
                .map(TxnPeerAnswer::Verify),
        };
        match answer {
            Ok(answer) => Some(answer),
            Err(e) => {
                debug!(to, error = %e, "transaction call not answered");
                None
            }
        }
    }
}

/// Sends `call` to broker `to` through core 0's transport, from any core.
pub async fn send(core: &Core, to: i32, call: TxnPeerCall) -> Option<TxnPeerAnswer> {
    if let Some(node) = core.cluster_node.get() {
        return node.txn_rpc.call(&node.transport, to, call).await;
    }
    match core
        .call(CONTROLLER_CORE, CoreRequest::TxnPeer { to, call })
        .await
    {
        Some(CoreReply::TxnPeer(answer)) => answer,
        _ => None,
    }
}

/// Takes one transaction frame from the inbox: an answer is delivered, a request served in
/// its own task. Other frames are not this module's: given back.
pub fn dispatch(core: &Rc<Core>, rpc: &Rc<TxnRpc>, me: i32, inbound: Inbound) -> Option<Inbound> {
    match inbound.body {
        Body::TxnMarkersResponse(response) => {
            rpc.markers.deliver(inbound.correlation_id, response);
            None
        }
        Body::TxnVerifyResponse(response) => {
            rpc.verify.deliver(inbound.correlation_id, response);
            None
        }
        Body::TxnMarkersRequest(_) | Body::TxnVerifyRequest(_) => {
            if rpc.serving.get() >= SERVED_MAX {
                warn!(
                    from = inbound.from,
                    "too many transaction requests in flight; refused"
                );
                refuse(me, inbound);
                return None;
            }
            rpc.serving.set(rpc.serving.get() + 1);
            let core = core.clone();
            let rpc = rpc.clone();
            glommio::spawn_local(async move {
                serve(&core, me, inbound).await;
                rpc.serving.set(rpc.serving.get() - 1);
            })
            .detach();
            None
        }
        _ => Some(inbound),
    }
}

/// Answers a request over the limit with a retriable error for each part.
fn refuse(me: i32, inbound: Inbound) {
    let body = match &inbound.body {
        Body::TxnMarkersRequest(request) => Body::TxnMarkersResponse(crate::txn::refused_markers(
            request,
            ErrorCode::ThrottlingQuotaExceeded,
        )),
        Body::TxnVerifyRequest(_) => Body::TxnVerifyResponse(TxnVerifyResponse {
            error_code: ErrorCode::ThrottlingQuotaExceeded,
            verified: Vec::new(),
        }),
        _ => return,
    };
    let _ = inbound.connection.send(me, inbound.correlation_id, &body);
}

async fn serve(core: &Core, me: i32, inbound: Inbound) {
    let body = match inbound.body {
        Body::TxnMarkersRequest(request) => {
            Body::TxnMarkersResponse(crate::txn::serve_markers(core, request).await)
        }
        Body::TxnVerifyRequest(request) => {
            Body::TxnVerifyResponse(crate::txn::serve_verify(core, request).await)
        }
        _ => return,
    };
    // A closed connection: the sender times out and retries.
    let _ = inbound.connection.send(me, inbound.correlation_id, &body);
}
