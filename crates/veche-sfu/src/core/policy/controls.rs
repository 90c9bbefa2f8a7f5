//! The host controls: who may use which, and what each does to the meeting.

use tracing::info;
use veche_proto::{EndReason, ErrorCode, ParticipantId, Role, ServerMessage, TrackKind};

use super::{Actor, Effect, Meeting, Now};
use crate::core::HostControl;
use crate::meeting::{AuditEvent, ControlError, UserRef};
use crate::participant::slot;

/// Who may use a host control.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Host or co-host.
    Moderator,
    /// The host only.
    Host,
}

impl Meeting {
    /// A host control from `actor`.
    pub(in crate::core) fn control(
        &mut self,
        now: Now,
        actor: &Actor,
        control: HostControl,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.apply_control(now, actor, control, &mut fx);
        fx
    }

    fn apply_control(
        &mut self,
        now: Now,
        actor: &Actor,
        control: HostControl,
        fx: &mut Vec<Effect>,
    ) {
        match control {
            HostControl::Admit { participant_id } => {
                if !self.check_waiter(actor, participant_id, fx) {
                    return;
                }
                if self.members.len() >= self.max_participants {
                    let max = self.max_participants;
                    return refuse(
                        fx,
                        ErrorCode::MeetingFull,
                        format!(
                            "the meeting is full ({max} participants); nobody else can be admitted"
                        ),
                    );
                }
                let target = self.waiter_name(participant_id);
                self.audit(actor, "meeting.admit", target, String::new(), fx);
                if let Some(w) = self.take_waiter(participant_id, fx) {
                    self.admit(now, w.entrant, fx);
                }
            }
            HostControl::Deny { participant_id } => {
                if !self.check_waiter(actor, participant_id, fx) {
                    return;
                }
                let target = self.waiter_name(participant_id);
                self.audit(actor, "meeting.deny", target, String::new(), fx);
                fx.push(Effect::Error(
                    participant_id,
                    ErrorCode::Denied,
                    "the host did not let you into the meeting".into(),
                ));
                fx.extend(self.withdraw(participant_id));
            }
            HostControl::Mute {
                participant_id,
                kind,
            } => {
                if !self.check_member(actor, Needs::Moderator, participant_id, fx) {
                    return;
                }
                let target = self.member_name(participant_id);
                self.audit(actor, "meeting.mute", target, kind_name(kind).into(), fx);
                self.host_mute(actor, participant_id, kind, fx);
            }
            HostControl::MuteAll { allow_self_unmute } => {
                if !self.authorise(actor, Needs::Moderator, fx) {
                    return;
                }
                self.allow_self_unmute = allow_self_unmute;
                self.dirty = true;
                let targets: Vec<_> = self
                    .members
                    .iter()
                    .filter(|m| !m.role.moderates())
                    .map(|m| m.id)
                    .collect();
                self.audit(
                    actor,
                    "meeting.mute_all",
                    "everyone".into(),
                    format!("allow_self_unmute={allow_self_unmute}"),
                    fx,
                );
                for t in targets {
                    self.host_mute(actor, t, TrackKind::Audio, fx);
                }
                fx.push(Effect::Broadcast(ServerMessage::MeetingUpdated {
                    meeting: self.state(),
                }));
            }
            HostControl::AskUnmute {
                participant_id,
                kind,
            } => {
                if !self.check_member(actor, Needs::Moderator, participant_id, fx) {
                    return;
                }
                let target = self.member_name(participant_id);
                self.audit(
                    actor,
                    "meeting.ask_unmute",
                    target,
                    kind_name(kind).into(),
                    fx,
                );
                self.set_host_muted(participant_id, kind, false, fx);
                fx.push(Effect::Signal(
                    participant_id,
                    ServerMessage::UnmuteRequested {
                        kind,
                        by: actor.id(),
                    },
                ));
            }
            HostControl::SetMeeting {
                locked,
                allow_self_unmute,
            } => {
                if !self.authorise(actor, Needs::Moderator, fx) {
                    return;
                }
                let mut changes = Vec::new();
                if let Some(l) = locked
                    && self.locked != l
                {
                    self.locked = l;
                    changes.push(if l { "meeting.lock" } else { "meeting.unlock" });
                }
                if let Some(a) = allow_self_unmute
                    && self.allow_self_unmute != a
                {
                    self.allow_self_unmute = a;
                    changes.push(if a {
                        "meeting.allow_self_unmute"
                    } else {
                        "meeting.forbid_self_unmute"
                    });
                }
                self.dirty |= !changes.is_empty();
                for action in changes {
                    self.audit(actor, action, "meeting".into(), String::new(), fx);
                }
                fx.push(Effect::Broadcast(ServerMessage::MeetingUpdated {
                    meeting: self.state(),
                }));
            }
            HostControl::Remove {
                participant_id,
                bar,
            } => {
                if !self.check_other_member(
                    actor,
                    Needs::Moderator,
                    participant_id,
                    "to leave the meeting, send leave",
                    fx,
                ) {
                    return;
                }
                if self.role_of(participant_id) == Some(Role::Host) {
                    return refuse(fx, ErrorCode::Forbidden, "the host cannot be removed");
                }
                let target = self.member_name(participant_id);
                self.audit(
                    actor,
                    "meeting.remove",
                    target,
                    if bar { "barred".into() } else { String::new() },
                    fx,
                );
                let Some(m) = self.member_mut(participant_id) else {
                    return;
                };
                // Removed means back through the waiting room, if the meeting has one.
                m.forget_on_leave = true;
                let (user, ip) = (m.grant.user.clone(), m.grant.ip);
                if bar {
                    self.bar(user.as_ref(), ip);
                }
                let (code, why) = if bar {
                    (
                        ErrorCode::Barred,
                        "a host removed you from the meeting; you cannot rejoin it",
                    )
                } else {
                    (ErrorCode::Removed, "a host removed you from the meeting")
                };
                fx.push(Effect::Error(participant_id, code, why.into()));
                fx.push(Effect::RemoveMember(participant_id));
            }
            HostControl::SetRole {
                participant_id,
                role,
            } => {
                if !self.check_other_member(
                    actor,
                    Needs::Host,
                    participant_id,
                    "the host's role changes only by transfer_host",
                    fx,
                ) {
                    return;
                }
                let new_role = match role {
                    Role::CoHost => Role::CoHost,
                    Role::Participant | Role::Guest => self.base_role(participant_id),
                    Role::Host => {
                        return refuse(
                            fx,
                            ErrorCode::InvalidMessage,
                            "use transfer_host to make someone the host",
                        );
                    }
                };
                if self.role_of(participant_id) == Some(new_role) {
                    return;
                }
                let target = self.member_name(participant_id);
                let action = if new_role == Role::CoHost {
                    "meeting.make_cohost"
                } else {
                    "meeting.revoke_cohost"
                };
                self.audit(actor, action, target, String::new(), fx);
                self.set_role(participant_id, new_role, fx);
            }
            HostControl::TransferHost { participant_id } => {
                if !self.check_member(actor, Needs::Host, participant_id, fx) {
                    return;
                }
                if actor.is(participant_id) {
                    return;
                }
                let target = self.member_name(participant_id);
                self.audit(actor, "meeting.transfer_host", target, String::new(), fx);
                // The host stays unique: whoever held it (the actor, unless acting through
                // the API) becomes co-host.
                let current: Vec<_> = self
                    .members
                    .iter()
                    .filter(|m| m.role == Role::Host)
                    .map(|m| m.id)
                    .collect();
                self.set_role(participant_id, Role::Host, fx);
                for old in current {
                    self.set_role(old, Role::CoHost, fx);
                }
            }
            HostControl::EndMeeting => {
                if !self.authorise(actor, Needs::Host, fx) {
                    return;
                }
                self.audit(actor, "meeting.end", "meeting".into(), String::new(), fx);
                fx.push(Effect::End(EndReason::Host));
            }
        }
    }

    /// Sets a member's host mute of `kind`, and the forwarding gate with it.
    fn set_host_muted(
        &mut self,
        target: ParticipantId,
        kind: TrackKind,
        muted: bool,
        fx: &mut Vec<Effect>,
    ) {
        if let Some(m) = self.member_mut(target) {
            m.host_muted[slot(kind)] = muted;
            let gate = m.host_muted;
            fx.push(Effect::Gate(target, gate));
            self.dirty = true;
        }
    }

    fn host_mute(
        &mut self,
        actor: &Actor,
        target: ParticipantId,
        kind: TrackKind,
        fx: &mut Vec<Effect>,
    ) {
        if self.member(target).is_none() {
            return;
        }
        // A screen share just ends; there is no muted share to keep.
        if kind != TrackKind::Screen {
            self.set_host_muted(target, kind, true, fx);
        }
        fx.push(Effect::Signal(
            target,
            ServerMessage::MutedByHost {
                kind,
                by: actor.id(),
            },
        ));
        fx.push(Effect::StopTrack(target, kind));
    }

    /// Whether `actor`'s role allows `needs`; otherwise tells them why not.
    fn authorise(&self, actor: &Actor, needs: Needs, fx: &mut Vec<Effect>) -> bool {
        let role = match actor {
            Actor::Member(id) => match self.role_of(*id) {
                Some(role) => role,
                None => return false,
            },
            Actor::Remote { role, .. } => *role,
        };
        let allowed = match needs {
            Needs::Moderator => role.moderates(),
            Needs::Host => role == Role::Host,
        };
        if !allowed {
            let why = match needs {
                Needs::Moderator => "only the host or a co-host can do that",
                Needs::Host => "only the host can do that",
            };
            refuse(fx, ErrorCode::Forbidden, why);
        }
        allowed
    }

    /// Whether `actor` may use `needs` and `target` is a member; otherwise tells them.
    fn check_member(
        &self,
        actor: &Actor,
        needs: Needs,
        target: ParticipantId,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if !self.authorise(actor, needs, fx) {
            return false;
        }
        if self.member(target).is_some() {
            return true;
        }
        refuse(
            fx,
            ErrorCode::UnknownParticipant,
            format!("no participant {target} in this meeting"),
        );
        false
    }

    /// [`Meeting::check_member`], for an action one cannot aim at oneself (`to_self` says
    /// why not).
    fn check_other_member(
        &self,
        actor: &Actor,
        needs: Needs,
        target: ParticipantId,
        to_self: &str,
        fx: &mut Vec<Effect>,
    ) -> bool {
        if !self.check_member(actor, needs, target, fx) {
            return false;
        }
        if actor.is(target) {
            refuse(fx, ErrorCode::InvalidMessage, to_self);
            return false;
        }
        true
    }

    /// Whether `actor` moderates and `target` waits to get in; otherwise tells them.
    fn check_waiter(&self, actor: &Actor, target: ParticipantId, fx: &mut Vec<Effect>) -> bool {
        if !self.authorise(actor, Needs::Moderator, fx) {
            return false;
        }
        if self.is_waiting(target) {
            return true;
        }
        refuse(
            fx,
            ErrorCode::UnknownParticipant,
            format!("nobody with id {target} is in the waiting room"),
        );
        false
    }

    /// Records a host action of `actor` for the audit log. Instant guest rooms have no owner
    /// to show a log to, so only stored meetings are audited.
    fn audit(
        &self,
        actor: &Actor,
        action: &'static str,
        target: String,
        detail: String,
        fx: &mut Vec<Effect>,
    ) {
        let Some(meeting) = &self.record else {
            return;
        };
        let (user, name, ip) = match actor {
            Actor::Member(id) => {
                let Some(m) = self.member(*id) else {
                    return;
                };
                (m.grant.user.clone(), m.name.clone(), m.grant.ip)
            }
            Actor::Remote { user, ip, .. } => (user.clone(), "the API".to_owned(), *ip),
        };
        info!(?actor, action, %target, "host action");
        fx.push(Effect::Audit(AuditEvent {
            meeting_id: meeting.id.clone(),
            org_id: Some(meeting.org_id.clone()),
            actor: user,
            actor_name: name,
            ip,
            action,
            target,
            detail,
        }));
    }
}

fn refuse(fx: &mut Vec<Effect>, code: ErrorCode, message: impl Into<String>) {
    fx.push(Effect::Refuse(ControlError {
        code,
        message: message.into(),
    }));
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
        TrackKind::Screen => "screen",
    }
}

/// A participant as the audit log names them: display name, and account when signed in.
pub(super) fn describe(name: &str, user: Option<&UserRef>) -> String {
    match user {
        Some(u) => format!("{name} <{}>", u.email),
        None => format!("{name} (guest)"),
    }
}
