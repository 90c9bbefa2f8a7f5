//! Every fuzz target, bounded, on stable: the committed corpus and a few thousand seeded
//! mutations of it each (see `veche_fuzz::stable`). A panic in a target fails its test and
//! saves the input under `target/fuzz-failures/`.

use veche_fuzz::stable::{corpus, run_bounded};
use veche_fuzz::{api_body, client_message, corpus::seeds, sfu_datagram, stun_ufrag};

#[test]
fn client_message_parse() {
    let r = run_bounded("client_message", client_message::run, 20_000, 1);
    assert!(r.corpus_inputs >= 20, "{r:?}");
}

#[test]
fn stun_ufrag_peek() {
    let r = run_bounded("stun_ufrag", stun_ufrag::run, 50_000, 2);
    assert!(r.corpus_inputs >= 5, "{r:?}");
}

#[test]
fn sfu_datagrams_before_str0m() {
    let r = run_bounded("sfu_datagram", sfu_datagram::run, 300, 3);
    assert!(r.corpus_inputs >= 9, "{r:?}");
}

/// The seeds reach the handlers: some succeed, some are refused by validation.
#[test]
fn api_seeds_reach_the_handlers() {
    let statuses: Vec<(String, Option<u16>)> = corpus("api_body")
        .into_iter()
        .map(|(name, input)| (name, api_body::status(&input)))
        .collect();
    let ok = statuses
        .iter()
        .filter(|(_, s)| s.is_some_and(|s| s < 300))
        .count();
    let refused = statuses
        .iter()
        .filter(|(_, s)| s.is_some_and(|s| (400..500).contains(&s)))
        .count();
    assert!(ok >= 8 && refused >= 3, "{statuses:?}");
}

#[test]
fn api_bodies() {
    let r = run_bounded("api_body", api_body::run, 3_000, 4);
    assert!(r.corpus_inputs >= 22, "{r:?}");
}

/// The committed corpus holds what the generator makes (run `cargo run -p veche-fuzz --bin
/// gen-corpus` after changing it), besides any crashers and libFuzzer finds.
#[test]
fn committed_corpus_matches_the_generator() {
    for (target, name, bytes) in seeds() {
        let committed = corpus(target);
        let file = committed.iter().find(|(n, _)| *n == name);
        assert_eq!(
            file.map(|(_, b)| b),
            Some(&bytes),
            "fuzz/corpus/{target}/{name} is missing or stale: run gen-corpus"
        );
    }
}

/// The loop reports a target's panic instead of swallowing it.
#[test]
#[should_panic(expected = "planted")]
fn a_panicking_target_fails_the_run() {
    fn planted(data: &[u8]) {
        assert!(!data.contains(&b'{'), "planted failure");
    }
    run_bounded("client_message", planted, 10, 5);
}
