//! The few texts the server writes for people to read — an invitation's subject, body and
//! event description, a feed's name — in English and Russian. The web client has its own
//! catalogs (`web/i18n/`); these are the server's, chosen per request: an explicit `lang`,
//! else the request's `Accept-Language`, else English.

/// A language the server writes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ru,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    /// `en`, `ru`, or a tag starting with one (`ru-RU`); others are not ours.
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The most preferred of ours in an `Accept-Language` header (RFC 9110, 12.5.4).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let Some(lang) = parts.next().and_then(Lang::from_tag) else {
                continue;
            };
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            // Thousandths: q has at most three decimals.
            let q = (q.clamp(0.0, 1.0) * 1000.0) as u16;
            if q > 0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }
}

/// A message of the catalog; `{name}` marks where a value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// `{title}`
    InviteSubject,
    /// `{sender}`, `{title}`, `{when}`, `{details}`
    InviteBody,
    /// `{link}`
    JoinLine,
    /// `{passcode}`
    PasscodeLine,
    PasscodeWithheld,
    /// `{start}`: the first meeting's time
    EveryWeekFrom,
    FeedName,
}

impl Msg {
    pub const ALL: [Msg; 7] = [
        Msg::InviteSubject,
        Msg::InviteBody,
        Msg::JoinLine,
        Msg::PasscodeLine,
        Msg::PasscodeWithheld,
        Msg::EveryWeekFrom,
        Msg::FeedName,
    ];
}

/// The text of `msg` in `lang`. A message missing in a language does not compile.
pub fn text(lang: Lang, msg: Msg) -> &'static str {
    match (lang, msg) {
        (Lang::En, Msg::InviteSubject) => "Invitation: {title}",
        (Lang::Ru, Msg::InviteSubject) => "Приглашение: {title}",
        (Lang::En, Msg::InviteBody) => {
            "{sender} invites you to the video meeting \"{title}\".\n\nWhen: {when}\n\n{details}\n\nThe attached invitation (invite.ics) adds the meeting to your calendar."
        }
        (Lang::Ru, Msg::InviteBody) => {
            "{sender} приглашает вас на видеовстречу «{title}».\n\nКогда: {when}\n\n{details}\n\nПриложенное приглашение (invite.ics) добавит встречу в ваш календарь."
        }
        (Lang::En, Msg::JoinLine) => "Join the meeting: {link}",
        (Lang::Ru, Msg::JoinLine) => "Подключиться к встрече: {link}",
        (Lang::En, Msg::PasscodeLine) => "Passcode: {passcode}",
        (Lang::Ru, Msg::PasscodeLine) => "Код доступа: {passcode}",
        (Lang::En, Msg::PasscodeWithheld) => {
            "The meeting asks for a passcode; the organiser will tell you."
        }
        (Lang::Ru, Msg::PasscodeWithheld) => {
            "Для входа нужен код доступа: его сообщит организатор."
        }
        (Lang::En, Msg::EveryWeekFrom) => "every week from {start}",
        (Lang::Ru, Msg::EveryWeekFrom) => "каждую неделю с {start}",
        (Lang::En, Msg::FeedName) => "Veche meetings",
        (Lang::Ru, Msg::FeedName) => "Встречи Veche",
    }
}

/// `msg` in `lang` with each `{name}` replaced by its value.
pub fn fill(lang: Lang, msg: Msg, values: &[(&str, &str)]) -> String {
    let mut out = text(lang, msg).to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn placeholders(s: &str) -> BTreeSet<&str> {
        s.split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect()
    }

    /// Every message has a text in each language, with the same placeholders, and the
    /// Russian one is not the English one left untranslated.
    #[test]
    fn every_message_in_both_languages() {
        for msg in Msg::ALL {
            let en = text(Lang::En, msg);
            let ru = text(Lang::Ru, msg);
            assert!(!en.trim().is_empty() && !ru.trim().is_empty(), "{msg:?}");
            assert_ne!(en, ru, "{msg:?} is not translated");
            assert_eq!(placeholders(en), placeholders(ru), "{msg:?}");
            assert!(
                ru.chars()
                    .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap())),
                "{msg:?} has no Russian in it"
            );
        }
    }

    #[test]
    fn language_from_tags_and_accept_language() {
        assert_eq!(Lang::from_tag("ru-RU"), Some(Lang::Ru));
        assert_eq!(Lang::from_tag("EN"), Some(Lang::En));
        assert_eq!(Lang::from_tag("de"), None);
        assert_eq!(
            Lang::from_accept_language("de-DE, ru;q=0.8, en;q=0.5"),
            Some(Lang::Ru)
        );
        assert_eq!(
            Lang::from_accept_language("en;q=0.9, ru;q=0.95"),
            Some(Lang::Ru)
        );
        assert_eq!(Lang::from_accept_language("ru;q=0, fr"), None);
        assert_eq!(
            fill(Lang::Ru, Msg::InviteSubject, &[("title", "План")]),
            "Приглашение: План"
        );
    }
}
