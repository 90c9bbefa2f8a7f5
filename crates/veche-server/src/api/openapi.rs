//! The OpenAPI 3.1 document at `GET /api/v1/openapi.json`, generated from [`ROUTES`]. The
//! table is kept in sync with the router by tests: every entry must reach a handler, and the
//! authorisation matrix walks the same table.

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Who may call an endpoint, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No sign-in needed.
    Public,
    /// Any signed-in user.
    User,
    /// Host (owner), or co-host for reading; organisation admins and the operator too.
    MeetingHost,
    /// A member of the organisation (reading) or its admin.
    OrgMember,
    OrgAdmin,
    Operator,
}

impl Access {
    fn describe(self) -> &'static str {
        match self {
            Access::Public => "Public.",
            Access::User => "Signed-in users.",
            Access::MeetingHost => {
                "The meeting's host; co-hosts may read; admins of its organisation and the operator may do all."
            }
            Access::OrgMember => "Members of the organisation and the operator.",
            Access::OrgAdmin => "Admins of the organisation and the operator.",
            Access::Operator => "Operator admins only.",
        }
    }
}

/// One endpoint: method, path (relative to `/api/v1`), summary, access, request body schema
/// name and success status.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub body: Option<&'static str>,
    pub success: u16,
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    access: Access,
    body: Option<&'static str>,
    success: u16,
) -> Route {
    Route {
        method,
        path,
        summary,
        access,
        body,
        success,
    }
}

use Access::*;

pub const ROUTES: &[Route] = &[
    r("get", "/openapi.json", "This document", Public, None, 200),
    r(
        "get",
        "/config",
        "Server settings the web client needs (sign-up open, guest rooms)",
        Public,
        None,
        200,
    ),
    r(
        "post",
        "/auth/signup",
        "Create an account and its organisation; starts a session",
        Public,
        Some("Signup"),
        201,
    ),
    r(
        "post",
        "/auth/login",
        "Sign in: sets the session cookie and returns the bearer token",
        Public,
        Some("Login"),
        200,
    ),
    r(
        "post",
        "/auth/ldap",
        "Sign in with the directory's username and password (when LDAP is configured)",
        Public,
        Some("LdapLogin"),
        200,
    ),
    r(
        "get",
        "/auth/oidc/start",
        "Start an OpenID Connect sign-in: 303 to the provider (when configured)",
        Public,
        None,
        303,
    ),
    r(
        "get",
        "/auth/oidc/callback",
        "The provider's redirect back: 303 to the page, signed in, or to /login?sso_error=CODE",
        Public,
        None,
        303,
    ),
    r("post", "/auth/logout", "End this session", User, None, 204),
    r(
        "get",
        "/auth/me",
        "The signed-in user, their organisation and CSRF token",
        User,
        None,
        200,
    ),
    r(
        "post",
        "/auth/password",
        "Change the password; ends every other session",
        User,
        Some("PasswordChange"),
        200,
    ),
    r(
        "get",
        "/auth/calendar",
        "Whether the signed-in user has a private calendar feed (its URL is shown only when made)",
        User,
        None,
        200,
    ),
    r(
        "post",
        "/auth/calendar",
        "Make a new private calendar feed URL; the previous one stops working",
        User,
        Some("FeedReset"),
        200,
    ),
    r(
        "delete",
        "/auth/calendar",
        "Turn the private calendar feed off",
        User,
        None,
        204,
    ),
    r("get", "/plans", "Plans and their limits", Public, None, 200),
    r(
        "put",
        "/plans/{plan}",
        "Edit a plan's name, limits and features",
        Operator,
        Some("Plan"),
        200,
    ),
    r(
        "get",
        "/meetings",
        "Meetings I host or co-host",
        User,
        None,
        200,
    ),
    r(
        "post",
        "/meetings",
        "Create an instant or scheduled meeting",
        User,
        Some("NewMeeting"),
        201,
    ),
    r(
        "get",
        "/meetings/{meeting}",
        "A meeting's settings",
        MeetingHost,
        None,
        200,
    ),
    r(
        "patch",
        "/meetings/{meeting}",
        "Change a meeting",
        MeetingHost,
        Some("MeetingPatch"),
        200,
    ),
    r(
        "delete",
        "/meetings/{meeting}",
        "Delete a meeting",
        MeetingHost,
        None,
        204,
    ),
    r(
        "post",
        "/meetings/{meeting}/join",
        "Check a join: passcode, role, waiting room, plan limits",
        Public,
        Some("Join"),
        200,
    ),
    r(
        "get",
        "/meetings/{meeting}/invite.ics",
        "The scheduled meeting as an iCalendar (RFC 5545) file; query passcode=… (managers only, checked) puts the passcode in it, lang=en|ru",
        MeetingHost,
        None,
        200,
    ),
    r(
        "get",
        "/meetings/{meeting}/invites",
        "The meeting's email invitations and where each is (pending, sent, failed)",
        MeetingHost,
        None,
        200,
    ),
    r(
        "post",
        "/meetings/{meeting}/invites",
        "Email the invitation (with its .ics) to each address through the server's SMTP relay; 503 smtp_not_configured without one",
        MeetingHost,
        Some("Invites"),
        202,
    ),
    r(
        "get",
        "/meetings/{meeting}/live",
        "The running meeting: participants, waiting room, settings",
        MeetingHost,
        None,
        200,
    ),
    r(
        "post",
        "/meetings/{meeting}/live",
        "Use a host control on the running meeting (the signalling message's JSON); co-hosts \
         may use all but set_role, transfer_host and end_meeting",
        MeetingHost,
        Some("HostControl"),
        204,
    ),
    r(
        "get",
        "/orgs/{org}",
        "An organisation and its plan",
        OrgMember,
        None,
        200,
    ),
    r(
        "get",
        "/orgs/{org}/members",
        "Members of an organisation",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "post",
        "/orgs/{org}/members",
        "Create an account in the organisation",
        OrgAdmin,
        Some("NewMember"),
        201,
    ),
    r(
        "get",
        "/orgs/{org}/usage",
        "Meetings and participant-minutes (?since=&until=)",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "get",
        "/orgs/{org}/usage/series",
        "The organisation's usage over time (?from=&to=&bucket=hour|day&format=json|csv)",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "get",
        "/orgs/{org}/audit",
        "The organisation's audit log (?limit=&action=&actor=&since=&until=)",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "get",
        "/orgs/{org}/upgrade-requests",
        "The organisation's plan upgrade requests",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "post",
        "/orgs/{org}/upgrade-requests",
        "Request another plan",
        OrgAdmin,
        Some("UpgradeRequest"),
        201,
    ),
    r(
        "get",
        "/orgs/{org}/webhooks",
        "The organisation's webhook endpoints (without their secrets) and the event types",
        OrgAdmin,
        None,
        200,
    ),
    r(
        "post",
        "/orgs/{org}/webhooks",
        "Register a webhook endpoint; the answer carries its signing secret, shown only this once",
        OrgAdmin,
        Some("NewWebhook"),
        201,
    ),
    r(
        "patch",
        "/orgs/{org}/webhooks/{webhook}",
        "Change a webhook endpoint's URL, events or description (its secret and log stay)",
        OrgAdmin,
        Some("WebhookPatch"),
        200,
    ),
    r(
        "post",
        "/orgs/{org}/webhooks/{webhook}/secret",
        "Roll the endpoint's signing secret: the new one is shown only this once, the previous one signs beside it for keep_old_hours (default 24)",
        OrgAdmin,
        Some("SecretRoll"),
        200,
    ),
    r(
        "delete",
        "/orgs/{org}/webhooks/{webhook}",
        "Delete a webhook endpoint and its delivery log",
        OrgAdmin,
        None,
        204,
    ),
    r(
        "post",
        "/orgs/{org}/webhooks/{webhook}/test",
        "Queue a webhook.test delivery to the endpoint",
        OrgAdmin,
        None,
        202,
    ),
    r(
        "get",
        "/orgs/{org}/webhooks/{webhook}/deliveries",
        "The endpoint's delivery log, newest first (?limit=, at most 500)",
        OrgAdmin,
        None,
        200,
    ),
    r("get", "/admin/users", "Every account", Operator, None, 200),
    r(
        "patch",
        "/admin/users/{user}",
        "Set an account's role or organisation role",
        Operator,
        Some("UserPatch"),
        200,
    ),
    r(
        "get",
        "/admin/orgs",
        "Every organisation",
        Operator,
        None,
        200,
    ),
    r(
        "patch",
        "/admin/orgs/{org}",
        "Rename an organisation or move it to a plan directly",
        Operator,
        Some("OrgPatch"),
        200,
    ),
    r(
        "get",
        "/admin/usage",
        "Usage of every organisation (?since=&until=)",
        Operator,
        None,
        200,
    ),
    r(
        "get",
        "/admin/usage/series",
        "Usage over time of the service or one organisation (?from=&to=&bucket=hour|day&org=&format=json|csv)",
        Operator,
        None,
        200,
    ),
    r(
        "get",
        "/admin/dashboard",
        "Live figures: meetings and participants per node and shard and per organisation, forwarding rates, connection quality, database size",
        Operator,
        None,
        200,
    ),
    r(
        "get",
        "/admin/audit",
        "The whole audit log (?limit=&action=&actor=&org=&since=&until=)",
        Operator,
        None,
        200,
    ),
    r(
        "get",
        "/admin/upgrade-requests",
        "Upgrade requests (?status=pending)",
        Operator,
        None,
        200,
    ),
    r(
        "post",
        "/admin/upgrade-requests/{request}/approve",
        "Approve: the organisation moves to the plan",
        Operator,
        None,
        200,
    ),
    r(
        "post",
        "/admin/upgrade-requests/{request}/decline",
        "Decline an upgrade request",
        Operator,
        None,
        200,
    ),
];

fn schemas() -> Value {
    let s = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    let string = json!({"type": "string"});
    let int = json!({"type": "integer"});
    let boolean = json!({"type": "boolean"});
    let nullable_int = json!({"type": ["integer", "null"]});
    let mut all = json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "enum": ["bad_request", "invalid_field", "unauthenticated",
                "invalid_credentials", "forbidden", "csrf_failed", "not_found", "conflict",
                "signup_closed", "passcode_required", "wrong_passcode", "locked_out",
                "not_in_progress", "unknown_participant", "meeting_full", "unavailable", "busy",
                "unsupported_media_type", "directory_unavailable", "directory_no_email",
                "oidc_unavailable", "oidc_state_mismatch", "oidc_state_unknown",
                "oidc_access_denied", "oidc_provider_error", "oidc_code_rejected", "oidc_token_invalid",
                "oidc_email_unverified", "oidc_busy", "smtp_not_configured", "too_many_invites",
                "internal"]},
            "message": string}, "required": ["code", "message"]}}, "required": ["error"]},
        "Signup": s(json!({"email": string, "password": string, "name": string, "org_name": string}), &["email", "password", "name"]),
        "Login": s(json!({"email": string, "password": string}), &["email", "password"]),
        "LdapLogin": s(json!({"username": string, "password": string}), &["username", "password"]),
        "PasswordChange": s(json!({"current_password": string, "new_password": string}), &["current_password", "new_password"]),
        "Plan": s(json!({"name": string, "max_participants": nullable_int, "max_duration_minutes": nullable_int,
            "recording": boolean, "breakout_rooms": boolean, "e2ee_required": boolean, "large_meetings": boolean}),
            &["name", "max_participants", "max_duration_minutes", "recording", "breakout_rooms", "e2ee_required", "large_meetings"]),
        "NewMeeting": s(json!({"title": string, "starts_at": nullable_int, "duration_minutes": int,
            "recurrence": {"type": "string", "enum": ["none", "weekly"]}, "passcode": string,
            "waiting_room": boolean, "join_before_host": boolean,
            "co_hosts": {"type": "array", "items": string, "maxItems": 20,
                "description": "emails of members of the meeting's organisation"},
            "e2ee": {"type": "string", "enum": ["off", "optional", "required"], "description": "end-to-end encryption of the media (the plan may require it anyway)"}}), &["title"]),
        "MeetingPatch": s(json!({"title": string, "starts_at": nullable_int, "duration_minutes": int,
            "recurrence": {"type": "string", "enum": ["none", "weekly"]}, "passcode": {"type": ["string", "null"]},
            "waiting_room": boolean, "join_before_host": boolean, "co_hosts": {"type": "array", "items": string},
            "e2ee": {"type": "string", "enum": ["off", "optional", "required"], "description": "end-to-end encryption of the media (the plan may require it anyway)"}}), &[]),
        "Join": s(json!({"passcode": string}), &[]),
        // Open: each type has its own fields (docs/protocol.md).
        "HostControl": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["admit", "deny", "mute", "mute_all", "ask_unmute",
                "set_meeting", "remove", "set_role", "transfer_host", "end_meeting"]},
            "participant_id": int, "kind": {"type": "string", "enum": ["audio", "video", "screen"]},
            "allow_self_unmute": boolean, "locked": boolean, "bar": boolean,
            "role": {"type": "string", "enum": ["co_host", "participant"]}}, "required": ["type"]},
        "NewMember": s(json!({"email": string, "name": string, "password": string,
            "org_role": {"type": "string", "enum": ["admin", "member"]}}), &["email", "name", "password"]),
        "UpgradeRequest": s(json!({"plan_id": string, "note": string}), &["plan_id"]),
        "OrgPatch": s(json!({"name": string, "plan_id": string}), &[]),
        "NewWebhook": s(json!({"url": {"type": "string", "format": "uri",
                "description": "http:// or https://, at most --webhook-max-url-bytes"},
            "events": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "string",
                "enum": ["meeting.started", "meeting.ended", "participant.joined", "participant.left"]}},
            "description": string}), &["url", "events"]),
        "WebhookPatch": s(json!({"url": {"type": "string", "format": "uri",
                "description": "http:// or https://, at most --webhook-max-url-bytes"},
            "events": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "string",
                "enum": ["meeting.started", "meeting.ended", "participant.joined", "participant.left"]}},
            "description": string}), &[]),
        "SecretRoll": s(json!({"keep_old_hours": {"type": "integer", "minimum": 0, "maximum": 168}}), &[]),
        "UserPatch": s(json!({"role": {"type": "string", "enum": ["admin", "user"]},
            "org_role": {"type": "string", "enum": ["admin", "member"]}}), &[]),
        // Answers (not closed: fields may be added).
        "User": {"type": "object", "properties": {"id": string, "email": string, "name": string,
            "role": {"type": "string", "enum": ["admin", "user"]}, "org_id": string,
            "org_role": {"type": "string", "enum": ["admin", "member"]}, "created_at": int}},
        "Org": {"type": "object", "properties": {"id": string, "name": string, "plan_id": string, "created_at": int}},
        "PlanInfo": {"type": "object", "properties": {"id": string, "name": string,
            "max_participants": nullable_int, "max_duration_minutes": nullable_int, "recording": boolean,
            "breakout_rooms": boolean, "e2ee_required": boolean, "large_meetings": boolean}},
        "Session": {"type": "object", "properties": {"token": string, "csrf_token": string,
            "expires_at": int, "user": {"$ref": "#/components/schemas/User"}, "org": {"$ref": "#/components/schemas/Org"}}},
        "Meeting": {"type": "object", "properties": {"id": string, "org_id": string, "owner_id": string,
            "title": string, "starts_at": nullable_int, "duration_minutes": int,
            "recurrence": {"type": "string", "enum": ["none", "weekly"]}, "has_passcode": boolean,
            "waiting_room": boolean, "join_before_host": boolean, "co_hosts": {"type": "array", "items": string},
            "e2ee": {"type": "string", "enum": ["off", "optional", "required"]}, "created_at": int,
            "sequence": {"type": "integer", "description": "bumped by every change (the iCalendar SEQUENCE)"}}},
        "LiveMeeting": {"type": "object", "properties": {"live": boolean,
            "meeting": {"type": "object", "properties": {"title": string, "locked": boolean,
                "allow_self_unmute": boolean, "ends_at_ms": nullable_int,
                "e2ee": {"type": "string", "enum": ["off", "optional", "required"]}}},
            "participants": {"type": "array", "items": {"type": "object", "properties": {
                "id": int, "name": string, "role": {"type": "string"}, "audio": boolean,
                "video": boolean, "screen": boolean, "hand_raised": boolean}}},
            "waiting": {"type": "array", "items": {"type": "object", "properties": {
                "id": int, "name": string, "role": {"type": "string"}}}}}},
        "JoinDecision": {"type": "object", "properties": {"meeting_id": string, "org_id": string, "title": string,
            "role": {"type": "string", "enum": ["host", "co_host", "participant", "guest"]},
            "waiting_room": boolean, "wait_for_host": boolean, "max_participants": nullable_int,
            "max_duration_minutes": nullable_int,
            "e2ee": {"type": "string", "enum": ["off", "optional", "required"],
                "description": "the meeting's setting, or required when its plan requires it"},
            "plan": {"$ref": "#/components/schemas/PlanInfo"}}},
        "Webhook": {"type": "object", "properties": {"id": string, "org_id": string, "url": string,
            "events": {"type": "array", "items": string}, "description": string,
            "created_by": {"type": ["string", "null"]}, "created_at": int,
            "secret": {"type": "string", "description": "only in the answer to its creation"}}},
        "UpgradeRequestInfo": {"type": "object", "properties": {"id": string, "org_id": string,
            "requested_by": string, "plan_id": string, "note": string,
            "status": {"type": "string", "enum": ["pending", "approved", "declined"]},
            "created_at": int, "decided_by": {"type": ["string", "null"]}, "decided_at": nullable_int}},
    });
    // Calendar invitations (docs/calendar.md); a second `json!`, as one is near the macro's
    // recursion limit.
    let calendar = json!({
        "Invites": s(json!({"emails": {"type": "array", "items": string, "minItems": 1,
                "description": "at most --invite-max-recipients addresses"},
            "passcode": {"type": "string", "description": "the meeting's passcode, to put in the invitation (managers only)"},
            "lang": {"type": "string", "enum": ["en", "ru"]}}), &["emails"]),
        "FeedReset": s(json!({"lang": {"type": "string", "enum": ["en", "ru"]}}), &[]),
        "InviteList": {"type": "object", "properties": {"invites": {"type": "array", "items": {
            "type": "object", "properties": {"id": string, "meeting_id": string, "sender_id": string,
                "email": string, "status": {"type": "string", "enum": ["pending", "sent", "failed"]},
                "attempts": int, "last_error": {"type": ["string", "null"]}, "created_at_ms": int,
                "sent_at_ms": nullable_int}}}}},
    });
    if let (Value::Object(all), Value::Object(more)) = (&mut all, calendar) {
        all.extend(more);
    }
    all
}

/// The schema of a route's success answer, where it is one object.
fn response_schema(route: &Route) -> Option<&'static str> {
    Some(match (route.method, route.path) {
        ("post", "/auth/signup" | "/auth/login" | "/auth/ldap" | "/auth/password") => "Session",
        ("post", "/meetings") | ("get" | "patch", "/meetings/{meeting}") => "Meeting",
        ("post", "/meetings/{meeting}/join") => "JoinDecision",
        ("get" | "post", "/meetings/{meeting}/invites") => "InviteList",
        ("get", "/meetings/{meeting}/live") => "LiveMeeting",
        ("put", "/plans/{plan}") => "PlanInfo",
        ("post", "/orgs/{org}/members") | ("patch", "/admin/users/{user}") => "User",
        ("patch", "/admin/orgs/{org}") => "Org",
        ("post", "/orgs/{org}/webhooks") | ("patch", "/orgs/{org}/webhooks/{webhook}") => "Webhook",
        ("post", "/orgs/{org}/upgrade-requests")
        | ("post", "/admin/upgrade-requests/{request}/approve")
        | ("post", "/admin/upgrade-requests/{request}/decline") => "UpgradeRequestInfo",
        _ => return None,
    })
}

/// Builds the document from [`ROUTES`].
pub fn document_value() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": route.summary,
            "description": route.access.describe(),
            "parameters": params,
            "responses": {
                route.success.to_string(): match response_schema(route) {
                    Some(name) => json!({"description": "success", "content": {"application/json":
                        {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}),
                    None => json!({"description": "success"}),
                },
                "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if route.access != Access::Public {
            op["security"] = json!([{"bearer": []}, {"cookie": []}]);
        }
        if let Some(body) = route.body {
            let optional = route.method == "post"
                && (route.path.ends_with("/join") || route.path == "/auth/calendar");
            op["requestBody"] = json!({"required": !optional,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}}});
        }
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Veche API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the token from POST /auth/login"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": super::SESSION_COOKIE,
                    "description": "browser session; state-changing requests also need the X-CSRF-Token header"},
            },
        },
    })
}

pub(super) async fn document() -> Response {
    axum::Json(document_value()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names a schema that exists.
    #[test]
    fn every_reference_resolves() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        if k == "$ref" {
                            out.push(v.as_str().unwrap_or_default().to_owned());
                        }
                        refs(v, out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document_value();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > ROUTES.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} missing"
            );
        }
    }
}
