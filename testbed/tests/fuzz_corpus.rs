//! Replays the fuzz corpus (`fuzz/corpus/simulator_http`: the seeds, plus any input the fuzzer
//! ever found breaking a rule, kept as a regression) through the simulator on stable, so that
//! `cargo test` holds every input the coverage-guided fuzzer learned from.

use selfupgrade_testbed::quicksight::fuzzing::exercise;

#[test]
fn every_corpus_input_is_answered_within_the_rules() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/simulator_http");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).expect("the corpus directory") {
        let path = entry.expect("entry").path();
        let input = std::fs::read(&path).expect("readable");
        if let Err(violation) = exercise(&runtime, &input) {
            panic!("{}: {violation:?}", path.display());
        }
        replayed += 1;
    }
    assert!(
        replayed >= 5,
        "the seed corpus is missing: {replayed} inputs"
    );
}
