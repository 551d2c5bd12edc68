//! Who may say what on the bus.
//!
//! Anyone holding the broker's credentials (every node that joined) can put
//! any message on any queue. So handlers act only on messages vouched for by
//! whom they expect ([`Delivery::origin`]):
//!
//! - work for a worker: signed by the key of the orchestrator it follows
//!   (from its join answer, or the candidate it accepted as orchestrator);
//! - a promotion ("a new orchestrator leads"): signed by the rollover
//!   candidate the orchestrator named, or by the orchestrator itself;
//! - reports to the orchestrator: signed by the key the node in `from`
//!   registered when it joined.
//!
//! Messages of the in-process bus ([`Origin::InProcess`]) come from the
//! process itself and are always authentic.

use super::{Delivery, Origin};
use crate::auth::PublicKey;
use crate::node::GenericNode;

/// Whether `delivery` is signed by the orchestrator `node` follows.
pub fn from_orchestrator(node: &GenericNode, delivery: &Delivery) -> bool {
    match delivery.origin {
        Origin::InProcess => true,
        Origin::Signed(key) => node.trust().orchestrator == Some(key),
        Origin::Unsigned => false,
    }
}

/// The key of the rollover candidate `node` was told of, when `delivery`
/// comes from that candidate (signed by it, and naming it as sender).
pub fn from_candidate(node: &GenericNode, delivery: &Delivery) -> Option<PublicKey> {
    let (id, key) = node.trust().candidate?;
    match delivery.origin {
        Origin::Signed(k) if k == key && delivery.envelope.from == id => Some(key),
        _ => None,
    }
}

/// Whether `delivery` is signed by `expected`, the key registered for the
/// node it names as sender (`None`: no key known, nothing is believed).
pub fn from_sender(delivery: &Delivery, expected: Option<PublicKey>) -> bool {
    match delivery.origin {
        Origin::InProcess => true,
        Origin::Signed(key) => expected == Some(key),
        Origin::Unsigned => false,
    }
}
