//! Messages from the workers taken in: fencing decides which are accepted
//! (signed by their sender, of this epoch or from the rollover candidate);
//! accepted status reports are stored together, node reports and log lines
//! handed to their handlers, and each message acknowledged once handled.

use tracing::warn;

use super::fencing::{admit, Admission, Incoming};
use super::{OrchestrationExecutor, OrchestratorError};
use crate::bus::{Body, Channel, Delivery};
use crate::executor::ExecutionFailure;
use crate::node::GenericNode;

impl OrchestrationExecutor {
    /// Takes in the messages of `channel` that came together, in order:
    /// those fencing lets through are handled (status reports all in one
    /// batch), the others dropped with a warning; each is acknowledged once
    /// handled. A message of a newer epoch from the rollover candidate ends
    /// the orchestrator (it steps down).
    pub(super) async fn take_in_all(
        &mut self,
        node: &GenericNode,
        channel: &Channel,
        deliveries: Vec<Delivery>,
    ) -> Result<(), ExecutionFailure> {
        let mut reports = Vec::new();
        let mut handled = Vec::with_capacity(deliveries.len());
        let mut outcome = Ok(());
        for d in deliveries {
            let from = d.envelope.from.clone();
            let incoming = Incoming {
                signed: self.signed_by_its_sender(node, &d),
                epoch: d.envelope.epoch,
                from_candidate: self.is_candidate(&from),
            };
            match admit(incoming, node.epoch()) {
                Admission::Accept => match (channel, &d.envelope.body) {
                    (Channel::Deployment, Body::Deployment(r)) => reports.push((from, r.clone())),
                    (_, body) => self.take_in(node, channel, &from, body.clone()).await,
                },
                Admission::Unsigned => {
                    warn!(%from, origin = ?d.origin, "dropping a message not signed by the node it names as sender");
                }
                Admission::NewerEpochFromStranger => warn!(
                    %from,
                    epoch = d.envelope.epoch,
                    "dropping a message of a newer epoch from a node that is not the rollover candidate"
                ),
                Admission::Superseded { epoch } => {
                    let e = OrchestratorError::Superseded { from, epoch, ours: node.epoch() };
                    outcome = Err(ExecutionFailure::fatal(e.to_string()));
                    handled.push(d);
                    break;
                }
            }
            handled.push(d);
        }
        self.on_deployment_reports(reports);
        for d in handled {
            d.ack().await;
        }
        outcome
    }

    /// Whether `d` is signed by the key registered for the node it names as
    /// sender (this node's own key for its own reports).
    fn signed_by_its_sender(&self, node: &GenericNode, d: &Delivery) -> bool {
        let from = &d.envelope.from;
        let expected = if *from == node.id {
            node.public_key()
        } else {
            self.state.node(from).and_then(|n| n.public_key)
        };
        crate::bus::trust::from_sender(d, expected)
    }

    /// Whether `id` is the rollover candidate this orchestrator named: the
    /// only node whose newer epoch makes it step down.
    fn is_candidate(&self, id: &str) -> bool {
        self.state.node(id).is_some_and(|n| n.rollover_priority == 1)
    }

    /// Takes in one message a worker sent, once fencing let it through.
    async fn take_in(&mut self, node: &GenericNode, channel: &Channel, from: &str, body: Body) {
        match (channel, body) {
            (Channel::Deployment, Body::Deployment(r)) => {
                self.on_deployment_reports(vec![(from.to_string(), r)])
            }
            (Channel::Sysinfo, Body::Sysinfo(report)) => self.on_node_report(node, from, report).await,
            (Channel::Log, Body::Log(batch)) => {
                // Only the node running the deployment writes to its log.
                let current = self.state.deployment(&batch.deployment);
                if current.is_some_and(|c| c.node.as_deref() == Some(from)) {
                    if let Err(e) = self.state.append_logs(&batch.deployment, batch.lines) {
                        warn!(error = %e, "could not store log lines");
                    }
                }
            }
            (channel, other) => warn!(%channel, ?other, "dropping an unexpected message on this channel"),
        }
    }
}
