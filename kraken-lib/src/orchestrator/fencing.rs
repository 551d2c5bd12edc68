//! Which messages the orchestrator takes in, and when it steps down. Every
//! message carries its sender's signature and the epoch its sender follows.
//! A message not signed by the node it names is dropped. A newer epoch means
//! another orchestrator leads the platform, but only the rollover candidate
//! this orchestrator named can have taken over: a newer epoch from any other
//! node is dropped (a joined machine cannot make the orchestrator step
//! down), and one from the candidate makes this orchestrator step down.

/// What to do with one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Take it in.
    Accept,
    /// Drop it: it is not signed by the node it names as sender.
    Unsigned,
    /// Drop it: a node that is not the rollover candidate speaks for a newer epoch.
    NewerEpochFromStranger,
    /// Step down: the rollover candidate speaks for a newer epoch.
    Superseded {
        /// The candidate's epoch.
        epoch: u64,
    },
}

/// A message from a sender, as far as fencing cares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming {
    /// Whether it is signed by the key registered for the node it names.
    pub signed: bool,
    /// The epoch its sender follows.
    pub epoch: u64,
    /// Whether its sender is the rollover candidate this orchestrator named.
    pub from_candidate: bool,
}

/// Decides what to do with `message`, this orchestrator being at epoch `ours`.
pub(crate) fn admit(message: Incoming, ours: u64) -> Admission {
    if !message.signed {
        Admission::Unsigned
    } else if message.epoch <= ours {
        Admission::Accept
    } else if message.from_candidate {
        Admission::Superseded { epoch: message.epoch }
    } else {
        Admission::NewerEpochFromStranger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn message(signed: bool, epoch: u64, from_candidate: bool) -> Incoming {
        Incoming { signed, epoch, from_candidate }
    }

    #[test]
    fn messages_of_this_epoch_or_an_older_one_are_taken_in() {
        assert_eq!(admit(message(true, 3, false), 3), Admission::Accept);
        // A worker that has not heard of the latest takeover yet still counts.
        assert_eq!(admit(message(true, 2, false), 3), Admission::Accept);
        assert_eq!(admit(message(true, 3, true), 3), Admission::Accept);
    }

    #[test]
    fn only_the_named_candidate_with_a_newer_epoch_makes_the_orchestrator_step_down() {
        assert_eq!(admit(message(true, 4, true), 3), Admission::Superseded { epoch: 4 });
        assert_eq!(admit(message(true, 4, false), 3), Admission::NewerEpochFromStranger);
        assert_eq!(admit(message(true, u64::MAX, false), 3), Admission::NewerEpochFromStranger);
    }

    #[test]
    fn an_unsigned_message_is_dropped_whatever_it_claims() {
        for (epoch, from_candidate) in [(3, false), (2, true), (4, true), (4, false)] {
            assert_eq!(admit(message(false, epoch, from_candidate), 3), Admission::Unsigned);
        }
    }
}
