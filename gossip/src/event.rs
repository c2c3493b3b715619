//! [`MemberEvent`]: the membership changes the agent reacts to, derived from foca's
//! notifications.

use foca::Notification;

use crate::identity::GossipIdentity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member became active (joined, or came back).
    Up(GossipIdentity),
    /// A member was declared down by the cluster or left gracefully.
    Down(GossipIdentity),
    /// A newer identity took over an address (`new` won the conflict, usually a restart).
    /// Liveness is unchanged; an `Up` follows if `old` was down.
    Replaced {
        old: GossipIdentity,
        new: GossipIdentity,
    },
}

impl MemberEvent {
    /// The event for a foca notification, if it concerns another member. Notifications about
    /// ourselves (active, idle, defunct, rejoin) are only logged by the driver.
    pub(crate) fn from_notification(
        notification: &Notification<'_, GossipIdentity>,
    ) -> Option<MemberEvent> {
        match notification {
            Notification::MemberUp(id) => Some(MemberEvent::Up((*id).clone())),
            Notification::MemberDown(id) => Some(MemberEvent::Down((*id).clone())),
            Notification::Rename(old, new) => Some(MemberEvent::Replaced {
                old: (*old).clone(),
                new: (*new).clone(),
            }),
            _ => None,
        }
    }
}
