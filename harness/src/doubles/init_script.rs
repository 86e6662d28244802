//! STAND-IN for `coder_agent.init_script` (what Coder renders from
//! coder/coder `provisionersdk/scripts/bootstrap_linux.sh`): same contract,
//! written for the harness (`init-script.sh`).  The template's user-data
//! runs it as the agent unit's command; it downloads the agent stand-in
//! from the [`super::agent_api::AgentApiDouble`].

use crate::template::variant::Arch;

/// The stand-in's source with `@ACCESS_URL@`, `@ARCH@`, `@AUTH_TYPE@`.
pub const TEMPLATE: &str = include_str!("init-script.sh");

/// Coder's name for an architecture in `coder-linux-<arch>`
/// (`coder_agent.arch`: `amd64`, `arm64`).
pub fn coder_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// The init script for an agent of `arch` with `auth` (`token`, …) that
/// reaches Coder at `access_url` (with a trailing slash, as Coder's
/// `ACCESS_URL` has).
pub fn render(access_url: &str, arch: Arch, auth: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        access_url.ends_with('/'),
        "access URL {access_url:?} must end with `/` (the init script appends `bin/coder-linux-<arch>`)"
    );
    for (what, v) in [("access URL", access_url), ("auth type", auth)] {
        anyhow::ensure!(
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ":/.-_".contains(c)),
            "{what} {v:?}: expected only letters, digits and :/.-_ (it is placed in single quotes)"
        );
    }
    Ok(TEMPLATE
        .replace("@ACCESS_URL@", access_url)
        .replace("@ARCH@", coder_arch(arch))
        .replace("@AUTH_TYPE@", auth))
}

/// Size of the worst-case stand-in: 6 KiB. Coder's
/// `provisionersdk/scripts/bootstrap_linux.sh` was 3,287 bytes at the
/// newest commit the research saw (6f2a1369; 1,484 two years before), so
/// this leaves it room to almost double.
pub const WORST_CASE_BYTES: usize = 6 * 1024;

/// A GENERATED STAND-IN for Coder's agent init script as the coder
/// provider receives it (`CODER_AGENT_SCRIPT_<os>_<arch>`, with
/// `${ACCESS_URL}` twice and `${AUTH_TYPE}` once, which the provider
/// expands: terraform-provider-coder `provider/agent.go`), exactly `bytes`
/// long, for measuring user-data sizes. It has the shape of a POSIX shell
/// script (shebang, `set -eux`, a trap, functions, `command -v` probes, a
/// retry loop, exports, `exec`) but none of Coder's text (Coder's script is
/// AGPL): its lines are generated from a small vocabulary and a fixed
/// pseudo-random sequence, so it is no more compressible than a real
/// script (a test compares its gzip ratio with [`TEMPLATE`]'s).
pub fn worst_case_script(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "agent", "binary", "retry", "status", "fetch", "verify", "cache", "mirror", "token",
        "socket", "proxy", "config", "runtime", "session", "header", "archive", "digest",
        "channel", "signal", "buffer", "offset", "client", "server", "resolve", "install",
        "cleanup", "report", "timeout", "backoff", "version", "platform", "kernel", "device",
        "mount", "export", "profile", "bundle", "launch", "daemon", "handle",
    ];
    const TOOLS: &[&str] = &[
        "curl", "wget", "busybox", "mktemp", "chmod", "uname", "sleep", "head", "grep", "sed",
        "awk", "id", "capsh", "setcap", "sudo", "tr", "cut", "sort",
    ];
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64: a fixed sequence, so the stand-in never changes.
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick(&mut self, list: &[&'static str]) -> &'static str {
            list[(self.next() % list.len() as u64) as usize]
        }
        /// A pronounceable made-up word (3 to 5 syllables): names and
        /// messages vary as much as in a real script.
        fn word(&mut self) -> String {
            const C: &[u8] = b"bcdfghjklmnprstvwz";
            const V: &[u8] = b"aeiou";
            let n = 2 + self.next() % 3;
            (0..n)
                .flat_map(|_| {
                    [
                        C[(self.next() % C.len() as u64) as usize] as char,
                        V[(self.next() % V.len() as u64) as usize] as char,
                    ]
                })
                .collect()
        }
        fn letter(&mut self) -> char {
            (b'a' + (self.next() % 26) as u8) as char
        }
    }
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let head = "#!/usr/bin/env sh\n# GENERATED STAND-IN (harness::doubles::init_script::worst_case_script),\n# shaped like an agent init script; not Coder's text.\nset -eux\nwaitonexit() {\n\techo \"=== init script exited with $?; sleeping to keep the logs\"\n\tsleep 86400\n}\ntrap waitonexit EXIT\nBINARY_DIR=${BINARY_DIR:-$(mktemp -d -t coder.XXXXXX)}\nBINARY_URL=${ACCESS_URL}bin/coder-linux-amd64\ncd \"$BINARY_DIR\"\n";
    let tail = "export CODER_AGENT_AUTH=\"${AUTH_TYPE}\"\nexport CODER_AGENT_URL=\"${ACCESS_URL}\"\nexec ./coder agent\n";
    let mut body = String::new();
    let budget = bytes.saturating_sub(head.len() + tail.len());
    let mut n = 0u32;
    loop {
        n += 1;
        let (a, b, c, t) = (r.pick(WORDS), r.word(), r.word(), r.pick(TOOLS));
        let id = format!("{}_{:x}", a, r.next() % 0xfffff);
        let var = format!("{}_{:X}", b.to_uppercase(), r.next() % 0xffff);
        let block = match n % 4 {
            0 => format!(
                "# {a} {b}: {c} before the {} {} step {n}\n{id}() {{\n\tif command -v {t} >/dev/null 2>&1; then\n\t\techo \"{c} {b} via {t}: ${{{var}:-{}}}\"\n\telse\n\t\t{var}=$({} -{} \"$BINARY_DIR\" 2>/dev/null || true)\n\tfi\n}}\n",
                r.word(),
                r.pick(WORDS),
                r.word(),
                r.pick(TOOLS),
                r.letter(),
            ),
            1 => format!(
                "while :; do\n\t{t} -{} \"${{{var}}}\" \"$BINARY_DIR/{c}.{:x}\" && break\n\tstatus=$?\n\techo \"{a} failed with $status; retrying {b} in {} seconds\"\n\tsleep {}\ndone\n",
                r.letter(),
                r.next() % 0xffff,
                r.next() % 60,
                r.next() % 60,
            ),
            2 => format!(
                "case \"$(uname -m)\" in\n\t{a}*) {var}={c}-{:x} ;;\n\t*) {var}=\"${{{}_{:X}:-{b}}}\" ;;\nesac\n",
                r.next() % 0xfff,
                r.pick(WORDS).to_uppercase(),
                r.next() % 0xff,
            ),
            _ => format!(
                "if [ -n \"${{{var}:-}}\" ] && ! {t} -{} \"${{{var}}}\" >/dev/null; then\n\techo \"{a} {b} {c}: {} {} unavailable\" >&2\n\texit {}\nfi\n",
                r.letter(),
                r.word(),
                r.word(),
                1 + r.next() % 120,
            ),
        };
        // A note per block, as real scripts explain their steps.
        let block = format!(
            "# {} {} {} ({:x})\n{block}",
            r.word(),
            r.word(),
            r.pick(WORDS),
            r.next() % 0xffffff
        );
        if body.len() + block.len() > budget {
            break;
        }
        body.push_str(&block);
    }
    // Pad to the exact size with a comment line of generated words.
    let mut pad = String::new();
    let want = budget - body.len();
    if want > 0 {
        pad.push('#');
        while pad.len() + 1 < want {
            pad.push(' ');
            pad.push_str(&r.word());
        }
        pad.truncate(want - 1);
        pad.push('\n');
    }
    let out = format!("{head}{body}{pad}{tail}");
    debug_assert_eq!(out.len(), bytes.max(head.len() + tail.len()));
    out
}

/// What the coder provider makes of a `CODER_AGENT_SCRIPT_*` value:
/// `${ACCESS_URL}` → the access URL (with its trailing `/`), `${AUTH_TYPE}`
/// → the agent's `auth` (terraform-provider-coder `provider/agent.go`).
pub fn expand(script: &str, access_url: &str, auth: &str) -> String {
    script
        .replace("${ACCESS_URL}", access_url)
        .replace("${AUTH_TYPE}", auth)
}

#[cfg(test)]
mod worst_case_tests {
    use super::*;
    use std::io::Write;

    fn gzip_ratio(s: &str) -> f64 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap().len() as f64 / s.len() as f64
    }

    #[test]
    fn the_worst_case_stand_in_has_the_size_placeholders_and_shape_asked_for() {
        let s = worst_case_script(WORST_CASE_BYTES);
        assert_eq!(s.len(), WORST_CASE_BYTES);
        assert_eq!(s.matches("${ACCESS_URL}").count(), 2);
        assert_eq!(s.matches("${AUTH_TYPE}").count(), 1);
        assert!(s.starts_with("#!/usr/bin/env sh\n") && s.ends_with("exec ./coder agent\n"));
        for shape in [
            "set -eux",
            "trap ",
            "command -v ",
            "while :; do",
            "case \"$(uname -m)\"",
            "export CODER_AGENT_URL=",
        ] {
            assert!(s.contains(shape), "{shape}");
        }
        assert_eq!(worst_case_script(WORST_CASE_BYTES), s, "deterministic");
        assert_eq!(worst_case_script(4000).len(), 4000);
        // Valid POSIX shell once expanded (parsed, not run).
        let url = format!("https://{}.example.com/", "c".repeat(20));
        let e = expand(&s, &url, "aws-instance-identity");
        assert_eq!(e.matches(url.as_str()).count(), 2);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &e).unwrap();
        let o = std::process::Command::new("sh")
            .arg("-n")
            .arg(f.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Generated text that compressed better than a real script would make
    /// the user-data budget look roomier than it is. Size-matched, it must
    /// compress no better than the hand-written stand-in of Coder's script;
    /// whole, no better than 0.42 of its size: about the 90th percentile
    /// of the 25 shell scripts of 5-9 KB in this machine's /usr and /etc
    /// (gzip -9: median 0.35, 90th percentile 0.425, max 0.47).
    #[test]
    fn the_worst_case_stand_in_compresses_no_better_than_a_real_script() {
        let s = worst_case_script(WORST_CASE_BYTES);
        let prefix = gzip_ratio(&s[..TEMPLATE.len()]);
        let written = gzip_ratio(TEMPLATE);
        let whole = gzip_ratio(&s);
        println!(
            "gzip ratio: {prefix:.3} (first {} bytes; hand-written {written:.3}), {whole:.3} whole",
            TEMPLATE.len()
        );
        assert!(
            prefix >= written && whole >= 0.42,
            "generated stand-in: {prefix:.3} for its first {} bytes (hand-written stand-in: {written:.3}), {whole:.3} whole (floor 0.42)",
            TEMPLATE.len()
        );
    }
}
