//! `push-all.sh` with a stub `coder` and a stub gate on PATH: the gate runs
//! first, a failing gate means no push, every values file is pushed, paths
//! with spaces work, and a missing `coder` fails loudly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == ".terraform" {
                continue;
            }
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

fn stub(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the repository's push-all.sh, values/ and templates/ in a
/// directory whose path has spaces, plus stub `coder` and gate binaries
/// that append their argv to one shared log (so order is visible).
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    log: PathBuf,
}

impl Sandbox {
    fn new(gate_exit: i32, with_coder: bool) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("my templates repo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(repo().join("push-all.sh"), root.join("push-all.sh")).unwrap();
        copy_dir(&repo().join("values"), &root.join("values"));
        copy_dir(&repo().join("templates"), &root.join("templates"));
        let bin = dir.path().join("stub bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("calls.log");
        if with_coder {
            stub(
                &bin.join("coder"),
                &format!("echo \"coder $*\" >> '{}'", log.display()),
            );
        }
        stub(
            &bin.join("harness"),
            &format!(
                "echo \"harness $*\" >> '{}'\nexit {gate_exit}",
                log.display()
            ),
        );
        Sandbox {
            _dir: dir,
            root,
            bin,
            log,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        // PATH: the stubs plus the basic system dirs, so a real `coder`
        // installed on the machine can never be reached.
        let path = format!("{}:/usr/bin:/bin", self.bin.display());
        Command::new("bash")
            .arg(self.root.join("push-all.sh"))
            .args(args)
            .current_dir(&self.root)
            .env("PATH", path)
            .env("HARNESS_BIN", self.bin.join("harness"))
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn variant_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join("values"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "yml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    v.sort();
    v
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn gate_runs_first_then_every_variant_is_pushed() {
    for mode in [&[][..], &["create"][..]] {
        let sb = Sandbox::new(0, true);
        let out = sb.run(mode);
        assert!(out.status.success(), "{}", text(&out));
        let calls = sb.calls();
        assert!(
            calls.first().is_some_and(|c| c.starts_with("harness gate")),
            "the gate must run before any push: {calls:?}"
        );
        let pushes: Vec<_> = calls.iter().filter(|c| c.starts_with("coder ")).collect();
        let names = variant_names();
        assert_eq!(pushes.len(), names.len(), "{calls:?}");
        for name in &names {
            assert!(
                pushes.iter().any(|c| c.contains("templates push")
                    && c.ends_with(&format!(" {name}"))
                    && c.contains(&format!("values/{name}.yml"))),
                "no push of {name}: {calls:?}"
            );
        }
    }
}

#[test]
fn failing_gate_means_nothing_is_pushed() {
    let sb = Sandbox::new(1, true);
    let out = sb.run(&[]);
    assert!(!out.status.success(), "{}", text(&out));
    let calls = sb.calls();
    assert!(calls.iter().any(|c| c.starts_with("harness gate")));
    assert!(
        !calls.iter().any(|c| c.starts_with("coder ")),
        "pushed despite a failing gate: {calls:?}"
    );
}

#[test]
fn skip_gate_flag_pushes_without_the_gate() {
    let sb = Sandbox::new(1, true);
    let out = sb.run(&["--skip-gate"]);
    assert!(out.status.success(), "{}", text(&out));
    let calls = sb.calls();
    assert!(
        !calls.iter().any(|c| c.starts_with("harness ")),
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("coder ")).count(),
        variant_names().len()
    );
}

#[test]
fn missing_coder_fails_loudly_before_anything_runs() {
    let sb = Sandbox::new(0, false);
    let out = sb.run(&[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("coder"), "error must name `coder`: {err}");
    assert!(
        sb.calls().is_empty(),
        "a missing coder must be caught before the (long) gate runs: {:?}",
        sb.calls()
    );
}
