//! What a nix `--dry-run` says it would build or fetch, parsed from its
//! output (stderr; there is no JSON form of a dry run).
//!
//! The wording is nix's `printMissing` (nix `src/libmain/shared.cc`):
//!
//! ```text
//! this derivation will be built:            | these 3 derivations will be built:
//!   /nix/store/…-x.drv                      |   /nix/store/…-a.drv  (one a line)
//! this path will be fetched (0.10 MiB download, 0.40 MiB unpacked):
//! these 2 paths will be fetched (1.2 MiB download, 4.0 MiB unpacked):
//!   /nix/store/…-y
//! don't know how to build these paths:      (also "… (may be caused by read-only store access):")
//!   /nix/store/…-z
//! ```
//!
//! The sizes in the fetch header vary across nix versions ("MiB", or a
//! rendered size such as "10.3 KiB"), so only the header's start is matched.

/// The paths a dry run listed, by section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRun {
    /// Derivations nix would build.
    pub will_build: Vec<String>,
    /// Paths nix would fetch from a substituter.
    pub will_fetch: Vec<String>,
    /// Paths nix does not know how to build.
    pub unknown: Vec<String>,
    /// Counts announced by the headers ("these 3 derivations"), to detect
    /// a truncated listing.
    pub announced_build: usize,
    pub announced_fetch: usize,
}

impl DryRun {
    /// Nothing to build, fetch or give up on: everything is in the store.
    pub fn nothing_to_do(&self) -> bool {
        self.will_build.is_empty()
            && self.will_fetch.is_empty()
            && self.unknown.is_empty()
            && self.announced_build == 0
            && self.announced_fetch == 0
    }

    /// A human summary listing every path, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let mut section = |title: String, paths: &[String]| {
            s.push_str(&title);
            s.push('\n');
            for p in paths {
                s.push_str("  ");
                s.push_str(p);
                s.push('\n');
            }
        };
        if self.announced_build > 0 || !self.will_build.is_empty() {
            section(
                format!(
                    "{} derivation(s) would be BUILT in the guest:",
                    self.announced_build.max(self.will_build.len())
                ),
                &self.will_build,
            );
        }
        if self.announced_fetch > 0 || !self.will_fetch.is_empty() {
            section(
                format!(
                    "{} path(s) would be FETCHED (the guest is offline):",
                    self.announced_fetch.max(self.will_fetch.len())
                ),
                &self.will_fetch,
            );
        }
        if !self.unknown.is_empty() {
            section("nix does not know how to build:".to_string(), &self.unknown);
        }
        s
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Build,
    Fetch,
    Unknown,
}

/// `Some(n)` for "this <one> …" (1) or "these <n> <many> …", matched at the
/// start of `line` followed by `rest`.
fn header_count(line: &str, one: &str, many: &str, rest: &str) -> Option<usize> {
    if let Some(r) = line.strip_prefix(&format!("this {one} ")) {
        return r.starts_with(rest).then_some(1);
    }
    let r = line.strip_prefix("these ")?;
    let (n, r) = r.split_once(' ')?;
    let n: usize = n.parse().ok()?;
    let r = r.strip_prefix(many)?.strip_prefix(' ')?;
    r.starts_with(rest).then_some(n)
}

/// Parse the (merged stdout+stderr) output of `nix build --dry-run`,
/// `nix-build --dry-run` or `nixos-rebuild dry-build`. Lines that are not
/// part of a listing (warnings, "building the system configuration...")
/// are ignored; a listing ends at the first line that is not an indented
/// store path.
pub fn parse(output: &str) -> DryRun {
    let mut d = DryRun::default();
    let mut section = Section::None;
    for raw in output.lines() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if let Some(n) = header_count(t, "derivation", "derivations", "will be built:") {
            d.announced_build += n;
            section = Section::Build;
            continue;
        }
        if let Some(n) = header_count(t, "path", "paths", "will be fetched") {
            d.announced_fetch += n;
            section = Section::Fetch;
            continue;
        }
        if t.starts_with("don't know how to build these paths") {
            section = Section::Unknown;
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if indented && t.starts_with('/') {
            let p = t.to_string();
            match section {
                Section::Build => d.will_build.push(p),
                Section::Fetch => d.will_fetch.push(p),
                Section::Unknown => d.unknown.push(p),
                Section::None => {}
            }
            continue;
        }
        section = Section::None;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_do_when_nix_lists_nothing() {
        let d = parse("warning: Git tree '/x' is dirty\nbuilding the system configuration...\n");
        assert!(d.nothing_to_do(), "{d:?}");
        assert!(parse("").nothing_to_do());
    }

    #[test]
    fn builds_and_fetches_in_nix_2_x_wording() {
        let out = "\
building the system configuration...
these 3 derivations will be built:
  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-harness-deliberate-build-failure.drv
  /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-system-path.drv
  /nix/store/cccccccccccccccccccccccccccccccc-nixos-system-25.05.drv
these 2 paths will be fetched (12.34 MiB download, 56.78 MiB unpacked):
  /nix/store/dddddddddddddddddddddddddddddddd-stdenv-linux
  /nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-bash-5.2p37
warning: something else
";
        let d = parse(out);
        assert!(!d.nothing_to_do());
        assert_eq!(d.announced_build, 3);
        assert_eq!(d.will_build.len(), 3);
        assert!(d.will_build[0].ends_with("-harness-deliberate-build-failure.drv"));
        assert_eq!(d.announced_fetch, 2);
        assert_eq!(
            d.will_fetch,
            [
                "/nix/store/dddddddddddddddddddddddddddddddd-stdenv-linux",
                "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-bash-5.2p37"
            ]
        );
        let text = d.describe();
        assert!(text.contains("3 derivation(s) would be BUILT"), "{text}");
        assert!(text.contains("-system-path.drv"), "{text}");
        assert!(text.contains("2 path(s) would be FETCHED"), "{text}");
        assert!(text.contains("-stdenv-linux"), "{text}");
    }

    #[test]
    fn singular_headers_and_rendered_sizes() {
        let out = "\
this derivation will be built:
  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-etc.drv
this path will be fetched (10.3 KiB download, 40.1 KiB unpacked):
  /nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-hello-2.12
";
        let d = parse(out);
        assert_eq!(d.announced_build, 1);
        assert_eq!(
            d.will_build,
            ["/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-etc.drv"]
        );
        assert_eq!(d.announced_fetch, 1);
        assert_eq!(d.will_fetch.len(), 1);
    }

    #[test]
    fn unknown_paths_and_a_listing_ends_at_unindented_text() {
        let out = "\
don't know how to build these paths (may be caused by read-only store access):
  /nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x
error: build of '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-y' failed
  /nix/store/cccccccccccccccccccccccccccccccc-not-a-listing
";
        let d = parse(out);
        assert_eq!(d.unknown, ["/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x"]);
        assert!(d.will_build.is_empty() && d.will_fetch.is_empty());
        assert!(!d.nothing_to_do());
        assert!(d.describe().contains("does not know how to build"));
    }

    #[test]
    fn a_header_without_its_listing_still_counts() {
        // e.g. the output was cut: the announced count alone fails the check.
        let d = parse("these 12 derivations will be built:\n");
        assert!(!d.nothing_to_do());
        assert!(
            d.describe().contains("12 derivation(s)"),
            "{}",
            d.describe()
        );
        // Not headers: other text with similar words.
        assert!(
            parse("these derivations will be built soon, maybe\nthis path will be fine\n")
                .nothing_to_do()
        );
    }
}
