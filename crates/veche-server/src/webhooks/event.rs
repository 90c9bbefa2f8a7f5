//! What a webhook tells: the event types an endpoint subscribes to, and the JSON body of
//! each, made from what the SFU reports ([`SfuEvent`]).

use serde_json::{Value, json};
use veche_sfu::{MeetingRef, Presence, SfuEvent};

/// The kinds of event an endpoint may subscribe to. Their names are part of the API: they
/// are stored with each endpoint and sent in every body and in the `Veche-Event` header. A
/// new kind (a recording being ready, say) is a new variant with a new name; receivers
/// ignore types they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventType {
    MeetingStarted,
    MeetingEnded,
    ParticipantJoined,
    ParticipantLeft,
    /// Sent only to the endpoint an admin asked to test; nobody subscribes to it.
    Test,
}

impl EventType {
    /// Every type an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 4] = [
        EventType::MeetingStarted,
        EventType::MeetingEnded,
        EventType::ParticipantJoined,
        EventType::ParticipantLeft,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MeetingStarted => "meeting.started",
            EventType::MeetingEnded => "meeting.ended",
            EventType::ParticipantJoined => "participant.joined",
            EventType::ParticipantLeft => "participant.left",
            EventType::Test => "webhook.test",
        }
    }

    /// A type an endpoint may subscribe to, by name.
    pub fn parse_subscribable(s: &str) -> Option<EventType> {
        EventType::SUBSCRIBABLE
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// One event of one organisation, ready to be written to the delivery log of each of its
/// endpoints that subscribes to its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The same for every endpoint it goes to (receivers may use it to drop repeats).
    pub id: String,
    pub kind: EventType,
    pub org_id: String,
    /// The whole body, as sent.
    pub body: String,
}

impl Event {
    /// An event of `kind` with `data`, happened at `at_ms` (Unix milliseconds).
    pub fn new(kind: EventType, org_id: &str, at_ms: u64, data: Value) -> Event {
        let id = format!("evt_{}", crate::store::random_id(20));
        let body = json!({
            "id": id,
            "type": kind.as_str(),
            "org_id": org_id,
            "occurred_at_ms": at_ms,
            "data": data,
        })
        .to_string();
        Event {
            id,
            kind,
            org_id: org_id.to_owned(),
            body,
        }
    }

    /// The event a webhook reports for `e`, if any: only meetings with a stored record
    /// (which belong to an organisation) have webhooks.
    pub fn from_sfu(e: &SfuEvent) -> Option<Event> {
        match e {
            SfuEvent::MeetingStarted(s) => Some(Event::new(
                EventType::MeetingStarted,
                &s.meeting.org_id,
                s.started_at_ms,
                json!({"meeting": meeting(&s.meeting), "room": s.room}),
            )),
            SfuEvent::MeetingFinished(u) => Some(Event::new(
                EventType::MeetingEnded,
                &u.org_id,
                u.ended_at_ms,
                json!({
                    "meeting": {"id": u.meeting_id},
                    "started_at_ms": u.started_at_ms,
                    "ended_at_ms": u.ended_at_ms,
                    "peak_participants": u.peak_participants,
                    "participant_minutes": u.participant_ms.div_ceil(60_000),
                }),
            )),
            SfuEvent::ParticipantJoined(p) => Some(presence(EventType::ParticipantJoined, p)),
            SfuEvent::ParticipantLeft(p) => Some(presence(EventType::ParticipantLeft, p)),
            SfuEvent::Audit(_) | SfuEvent::MeetingSaved { .. } | SfuEvent::MeetingClosed { .. } => {
                None
            }
        }
    }

    /// The body of a test delivery.
    pub fn test(org_id: &str, at_ms: u64) -> Event {
        Event::new(
            EventType::Test,
            org_id,
            at_ms,
            json!({"message": "a test delivery asked for by an organisation admin"}),
        )
    }
}

fn meeting(m: &MeetingRef) -> Value {
    json!({"id": m.id, "title": m.title})
}

fn presence(kind: EventType, p: &Presence) -> Event {
    Event::new(
        kind,
        &p.meeting.org_id,
        p.at_ms,
        json!({
            "meeting": meeting(&p.meeting),
            "participant": {
                "id": p.participant_id,
                "name": p.name,
                "role": p.role,
                "user_id": p.user.as_ref().map(|u| &u.id),
                "email": p.user.as_ref().map(|u| &u.email),
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use veche_proto::Role;
    use veche_sfu::{MeetingUsage, UserRef};

    fn record() -> MeetingRef {
        MeetingRef {
            id: "m1".into(),
            org_id: "o1".into(),
            title: "Standup".into(),
        }
    }

    #[test]
    fn names_round_trip_and_test_is_not_subscribable() {
        for t in EventType::SUBSCRIBABLE {
            assert_eq!(EventType::parse_subscribable(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse_subscribable("webhook.test"), None);
        assert_eq!(EventType::parse_subscribable("meeting.Started"), None);
    }

    #[test]
    fn bodies_carry_type_org_and_data() {
        let joined = Event::from_sfu(&SfuEvent::ParticipantJoined(Presence {
            meeting: record(),
            participant_id: 7,
            name: "Ann".into(),
            user: Some(UserRef {
                id: "u1".into(),
                email: "ann@example.org".into(),
            }),
            role: Role::Host,
            at_ms: 1234,
        }))
        .unwrap();
        let v: Value = serde_json::from_str(&joined.body).unwrap();
        assert_eq!(v["type"], "participant.joined");
        assert_eq!(v["id"], joined.id);
        assert_eq!(v["org_id"], "o1");
        assert_eq!(v["occurred_at_ms"], 1234);
        assert_eq!(v["data"]["meeting"]["title"], "Standup");
        assert_eq!(v["data"]["participant"]["role"], "host");
        assert_eq!(v["data"]["participant"]["email"], "ann@example.org");

        let ended = Event::from_sfu(&SfuEvent::MeetingFinished(MeetingUsage {
            meeting_id: "m1".into(),
            org_id: "o1".into(),
            started_at_ms: 0,
            ended_at_ms: 90_000,
            peak_participants: 2,
            participant_ms: 61_000,
        }))
        .unwrap();
        assert_eq!(ended.kind, EventType::MeetingEnded);
        let v: Value = serde_json::from_str(&ended.body).unwrap();
        assert_eq!(v["data"]["participant_minutes"], 2);
        assert!(
            Event::from_sfu(&SfuEvent::MeetingClosed {
                room: "r".into(),
                seq: 1
            })
            .is_none(),
            "what only restarts need is not reported"
        );
    }
}
