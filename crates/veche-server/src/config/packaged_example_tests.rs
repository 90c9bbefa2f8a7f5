//! `packaging/veche.toml`, the settings file the Debian package installs as
//! `/etc/veche/veche.toml`, against the settings the server knows: every key the config file
//! accepts (the fields of [`FileConfig`] and of its `[directory]`, `[webhooks]` and
//! `[calendar]` tables) is documented there, in its table, and nothing else is; every flag of
//! `veche serve` is too; each commented example is a valid value.
//! `scripts/test-package.sh` starts the installed binary with the installed file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::CommandFactory;
use serde::Deserialize;
use serde::de::{self, Visitor};

use super::{Cli, Config, FileConfig, ServeArgs};
use crate::calendar::CalendarArgs;
use crate::directory::config::DirectoryArgs;
use crate::webhooks::WebhookArgs;

const EXAMPLE: &str = include_str!("../../../../packaging/veche.toml");

/// The tables of the config file, each with the struct its keys deserialize into.
const TABLES: [&str; 3] = ["directory", "webhooks", "calendar"];

/// The keys serde's derive accepts for `T` (renamed, as the file spells them). The derive hands
/// its field list to `deserialize_struct`; this deserializer keeps it and deserializes nothing.
fn keys_of<'de, T: Deserialize<'de>>() -> BTreeSet<&'static str> {
    struct FieldList<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for FieldList<'_> {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field list was wanted"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldList(&mut fields));
    assert!(
        !fields.is_empty(),
        "{} has no fields",
        std::any::type_name::<T>()
    );
    fields.iter().copied().collect()
}

/// A `key = value` line, with the key spelt as the file spells settings.
fn setting_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    let well_formed = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    well_formed.then_some(key)
}

/// The example with every `# key = value` line uncommented.
fn uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if setting_key(rest).is_some() => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The keys documented in each table ("" for the top level), commented or not.
fn documented_keys() -> BTreeMap<String, BTreeSet<String>> {
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut table = String::new();
    for line in uncommented().lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_owned();
            continue;
        }
        if let Some(key) = setting_key(line) {
            let fresh = tables
                .entry(table.clone())
                .or_default()
                .insert(key.to_owned());
            assert!(
                fresh,
                "packaging/veche.toml documents {key} twice in [{table}]"
            );
        }
    }
    tables
}

/// Flags of `veche serve` that are for tests only (e.g. a shorter meeting minute): the file
/// accepts them but the example does not offer them.
fn hidden_flags() -> BTreeSet<String> {
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve command");
    serve
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

fn owned(keys: BTreeSet<&str>) -> BTreeSet<String> {
    keys.into_iter().map(str::to_owned).collect()
}

#[test]
fn every_key_of_the_config_file_is_documented_in_its_table() {
    let documented = documented_keys();
    let hidden = hidden_flags();
    let top: BTreeSet<String> = owned(keys_of::<FileConfig>())
        .into_iter()
        .filter(|k| !TABLES.contains(&k.as_str()) && !hidden.contains(k))
        .collect();
    let expected = [
        ("", top),
        ("directory", owned(keys_of::<DirectoryArgs>())),
        ("webhooks", owned(keys_of::<WebhookArgs>())),
        ("calendar", owned(keys_of::<CalendarArgs>())),
    ];
    let mut wrong = Vec::new();
    for (table, keys) in &expected {
        let there = documented.get(*table).cloned().unwrap_or_default();
        let missing: Vec<_> = keys.difference(&there).collect();
        let unknown: Vec<_> = there.difference(keys).collect();
        if !missing.is_empty() || !unknown.is_empty() {
            let name = match *table {
                "" => "the top level".to_owned(),
                t => format!("[{t}]"),
            };
            wrong.push(format!(
                "{name}: missing {missing:?}, not a setting {unknown:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "packaging/veche.toml {}",
        wrong.join("; ")
    );
    let tables: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    let known: BTreeSet<&str> = expected.iter().map(|(t, _)| *t).collect();
    assert_eq!(tables, known, "the tables of packaging/veche.toml");
}

#[test]
fn every_flag_of_serve_is_documented() {
    let documented: BTreeSet<String> = documented_keys().into_values().flatten().collect();
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve command");
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "config" || long == "help" || arg.is_hide_set() {
            continue;
        }
        assert!(
            documented.contains(long),
            "packaging/veche.toml does not document --{long}"
        );
    }
}

#[test]
fn the_examples_are_valid_values_and_the_shipped_file_works() {
    if let Err(e) = toml::from_str::<FileConfig>(&uncommented()) {
        panic!("packaging/veche.toml with its examples uncommented does not parse: {e}");
    }
    // As shipped (everything but the data directory commented), it gives a working config.
    let shipped: FileConfig = toml::from_str(EXAMPLE).expect("packaging/veche.toml parses");
    let c = Config::merge(ServeArgs::default(), shipped).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/veche"));
    assert_eq!(c.database, "sqlite:///var/lib/veche/veche.db");
}
