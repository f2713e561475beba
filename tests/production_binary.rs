//! The production binary is the operator only: the stand-ins live in `selfupgrade-testbed`, and
//! its subcommands are not here (CI also checks that none of their crates is linked in).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_selfupgrade-operator");

#[test]
fn the_operator_binary_offers_only_the_operators_commands() {
    let output = Command::new(BIN).arg("help").output().expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("utf-8");
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(commands, ["run", "crd", "requests", "help"], "{help}");
}

#[test]
fn the_stand_ins_subcommands_are_unknown_to_it() {
    for stand_in in ["sim", "apiserver", "playground", "bench"] {
        let output = Command::new(BIN).arg(stand_in).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{stand_in} is refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("unrecognized subcommand"),
            "{stand_in}: {stderr}"
        );
    }
}
