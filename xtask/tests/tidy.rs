//! Repository rules that keep the simulator deterministic (DESIGN.md,
//! "Determinism rules"), checked over the source text of everything the
//! simulator runs: the node library, the simulator and the virtual network,
//! and the report reader that draws its charts and pages.

use std::path::{Path, PathBuf};

type Sources = [(String, String)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Source files the simulator runs, as (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["node/src", "sim/src", "sim/netsim/src", "analysis/src"] {
        walk(&root().join(dir), &mut out);
    }
    assert!(out.len() > 10, "found only {} source files", out.len());
    out
}

/// The daemon's code: its binary, and the modules `node/src/lib.rs`
/// declares only under `#[cfg(not(madsim))]` (checked by
/// [`real_mode_modules_are_not_built_for_the_simulator`]); none of it is
/// built into the simulator.
const REAL_MODE_ONLY: [&str; 3] = ["node/src/bin", "node/src/api", "node/src/daemon"];

#[test]
fn real_mode_modules_are_not_built_for_the_simulator() {
    let lib = std::fs::read_to_string(root().join("node/src/lib.rs")).unwrap();
    for dir in &REAL_MODE_ONLY[1..] {
        let module = dir.rsplit('/').next().unwrap();
        let declared = format!("#[cfg(not(madsim))]\npub mod {module};");
        assert!(
            lib.contains(&declared),
            "{dir} is skipped by the determinism checks, so node/src/lib.rs must declare it as `{declared}`"
        );
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            // The daemon is real-mode only; it never runs in the simulator.
            if !REAL_MODE_ONLY.contains(&rel.as_str()) {
                walk(&path, out);
            }
        } else if rel.ends_with(".rs") {
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// Numbered lines of code, without `//` comments.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// OS entropy anywhere, and wall-clock reads outside the places where they
/// cannot reach a report: the native half of the socket facade, madsim's
/// virtual clock, and the harness timing of the simulator's binary and
/// benchmark.
fn entropy_and_clock(sources: &Sources) -> Vec<String> {
    let clock_allowed = [
        "node/src/net.rs",
        "sim/netsim/src/sim.rs",
        "sim/src/main.rs",
        "sim/src/bench.rs",
        "sim/src/bench/sessions.rs",
    ];
    let banned = [
        "thread_rng",
        "rand::random",
        "from_entropy",
        "StdRng",
        "OsRng",
        "SystemTime::now",
        "getrandom",
    ];
    let mut bad = Vec::new();
    for (file, text) in sources {
        for (n, line) in code_lines(text) {
            for b in banned.iter().filter(|b| line.contains(*b)) {
                bad.push(format!("{file}:{n}: {b}"));
            }
            if line.contains("Instant::now") && !clock_allowed.contains(&file.as_str()) {
                bad.push(format!("{file}:{n}: Instant::now"));
            }
        }
    }
    bad
}

/// `select!` not followed by `biased;` within its first lines.
fn unbiased_selects(sources: &Sources) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, text) in sources {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("select!") && !line.trim_start().starts_with("//") {
                let head = lines[i..(i + 3).min(lines.len())].join(" ");
                if !head.contains("biased;") {
                    bad.push(format!("{file}:{}", i + 1));
                }
            }
        }
    }
    bad
}

/// Iteration over anything declared as a hash map or set (`name: HashMap<`,
/// `name: FxHashMap<`, `name: HashSet<`): lookups are fine, order is not.
fn hash_iteration(sources: &Sources) -> Vec<String> {
    let iterations = [
        ".iter()",
        ".iter_mut()",
        ".keys()",
        ".values()",
        ".values_mut()",
        ".drain()",
        ".into_iter()",
        ".retain(",
    ];
    let mut bad = Vec::new();
    for (file, text) in sources {
        let mut names = Vec::new();
        for (_, line) in code_lines(text) {
            for ty in ["HashMap<", "HashSet<"] {
                let Some(at) = line.find(ty) else { continue };
                let before = line[..at].trim_end().trim_end_matches("Fx").trim_end();
                if let Some(decl) = before.strip_suffix(':') {
                    let name = decl.trim().rsplit([' ', '{', '(']).next().unwrap_or("");
                    if !name.is_empty() {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        for (n, line) in code_lines(text) {
            for name in &names {
                for it in iterations {
                    if line.contains(&format!("{name}{it}")) {
                        bad.push(format!("{file}:{n}: {name}{it}"));
                    }
                }
                if line.contains(&format!("in &{name}")) || line.contains(&format!("in {name} ")) {
                    bad.push(format!("{file}:{n}: for .. in {name}"));
                }
            }
        }
    }
    bad
}

#[test]
fn no_os_entropy_or_wall_clock_in_simulated_code() {
    let bad = entropy_and_clock(&sources());
    assert!(
        bad.is_empty(),
        "non-determinism in simulated code:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_select_is_biased() {
    let bad = unbiased_selects(&sources());
    assert!(
        bad.is_empty(),
        "select! without `biased;`:\n{}",
        bad.join("\n")
    );
}

#[test]
fn hash_maps_are_only_looked_up_never_iterated() {
    let bad = hash_iteration(&sources());
    assert!(
        bad.is_empty(),
        "hash map iteration can leak its order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_rules_catch_what_they_are_for() {
    let src = |text: &str| vec![("node/src/x.rs".to_owned(), text.to_owned())];
    assert_eq!(
        entropy_and_clock(&src("let r = rand::thread_rng();")).len(),
        1
    );
    assert_eq!(entropy_and_clock(&src("let t = Instant::now();")).len(), 1);
    assert!(entropy_and_clock(&src("// thread_rng is banned")).is_empty());
    assert_eq!(
        unbiased_selects(&src("tokio::select! {\n  a = x => {}\n}")).len(),
        1
    );
    assert!(unbiased_selects(&src("tokio::select! {\n  biased;\n  a = x => {}\n}")).is_empty());
    let map = "struct S { seen: FxHashMap<u32, u32> }\nfn f(s: &S) { for x in s.seen.iter() {} }";
    assert_eq!(hash_iteration(&src(map)), ["node/src/x.rs:2: seen.iter()"]);
    let lookup = "struct S { seen: FxHashMap<u32, u32> }\nfn f(s: &S) { s.seen.get(&1); }";
    assert!(hash_iteration(&src(lookup)).is_empty());
}
