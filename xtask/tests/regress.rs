//! The gate refuses a gated scenario that was edited after its baseline
//! was recorded, before it builds or runs anything: exit 1, naming the
//! file and saying how to record a new baseline. Runs the real `xtask`.

use std::process::Command;

#[test]
fn an_edited_scenario_fails_the_gate_and_says_how_to_mend_it() {
    let root = std::env::temp_dir().join(format!("grove-regress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let scenario = root.join("gated.toml");
    std::fs::write(&scenario, "name = \"gated\"\nseed = 1\n# made easier\n").unwrap();
    // The baseline was recorded from another text of the scenario.
    let recorded = "5d2b1bca2430".repeat(5) + "5d2b";
    std::fs::write(
        root.join("gated.json"),
        format!("{{\"scenario\": {{\"sha256\": \"{recorded}\"}}}}"),
    )
    .unwrap();
    let gate = root.join("gate.toml");
    std::fs::write(
        &gate,
        format!(
            "[[scenario]]\nfile = {:?}\nseeds = 2\nbaseline = \"gated.json\"\n\n\
             [[scenario.metric]]\npath = \"cells.0.runs_passed\"\nbetter = \"equal\"\n",
            scenario.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("regress")
        .arg("--gate")
        .arg(&gate)
        .output()
        .expect("xtask runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("{} has SHA-256", scenario.display()))
            && stdout.contains("was recorded from 5d2b1bca2430")
            && stdout.contains("run `cargo xtask regress --update`"),
        "{stdout}"
    );
    // --only with a name the gate does not have is an error (exit 2).
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["regress", "--only", "nope", "--gate"])
        .arg(&gate)
        .output()
        .expect("xtask runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--only nope: the gate has no such scenario (it has: gated)"));
    let _ = std::fs::remove_dir_all(&root);
}
