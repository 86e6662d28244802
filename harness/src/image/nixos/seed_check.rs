//! The seed check: the bootstrap system seeded into the offline NixOS test
//! image must be the very system the guest evaluates from the user-data.
//!
//! The image seeds `bootstrapFor <user>` (nixos-vm/flake.nix: a flat module
//! list, amazon-image.nix + bootstrap.nix + the agent user, against the
//! guest's nixpkgs). The guest instead evaluates the user-data's
//! `/etc/coder-bootstrap/configuration.nix` (importing the same files,
//! reading the user from params.json) through root's channel
//! (`nixos-rebuild switch -I nixos-config=…`). If the two drvPaths differ
//! the guest has to build its bootstrap system, which it cannot offline, and
//! every `@nixos` scenario times out. The comparison is evaluation only
//! (`nix eval`, no system is built): the flake's
//! `legacyPackages.<system>.bootstrapSeedCheck`, fed the files the rendered
//! user-data writes ([`guest_files`], decoded exactly as the script does).
//! It runs wherever Nix can fetch nixpkgs (the nightly, before the image
//! build: `harness image nixos-seed-check`); here it runs against the
//! nixpkgs test double (`harness/tests/nixos_vm_flake.rs`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::template::variant::Arch;

/// The agent users the image seeds a bootstrap system for (nixos-vm/flake.nix
/// `seed`), the users the scenarios start workspaces with.
pub const SEEDED_USERS: [&str; 2] = ["coder", "dev"];

/// The files the user-data writes to `/etc/coder-bootstrap` (`$conf`),
/// by name, decoded as the script decodes them: base64, then gzip when the
/// script's own `unpack()` pipes through `gzip -dc` (the template gzips
/// every payload since issue 20; `unpack_gz` always does).
pub fn guest_files(user_data: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let re =
        regex::Regex::new(r#"(?m)^unpack(_gz)? '([A-Za-z0-9+/=]*)' "\$conf/([A-Za-z0-9._-]+)"$"#)
            .expect("regex");
    let unpack_gunzips = regex::Regex::new(r"(?m)^unpack\(\) *\{(.*)\}")
        .expect("regex")
        .captures(user_data)
        .is_some_and(|c| c[1].contains("gzip -dc"));
    let mut out = BTreeMap::new();
    for c in re.captures_iter(user_data) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&c[2])
            .map_err(|e| anyhow::anyhow!("user-data: {} is not base64: {e}", &c[3]))?;
        let bytes = if c.get(1).is_some() || unpack_gunzips {
            gunzip(&raw)?
        } else {
            raw
        };
        out.insert(c[3].to_string(), bytes);
    }
    for want in ["configuration.nix", "bootstrap.nix", "params.json"] {
        if !out.contains_key(want) {
            anyhow::bail!(
                "user-data: expected it to write $conf/{want} (unpack … \"$conf/{want}\"), seen {:?}",
                out.keys().collect::<Vec<_>>()
            );
        }
    }
    Ok(out)
}

/// `gzip -dc` (the user-data's own tool).
fn gunzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("gzip: cannot start: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        anyhow::bail!("gzip -dc: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

/// Write `files` into `dir` (the guest's `/etc/coder-bootstrap`).
pub fn write_guest_dir(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// A Nix string literal of `s`.
fn nix_string(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '$' => o.push_str("\\$"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The `--apply` expression calling the flake's function for `user` with
/// the guest files in `guest_dir` (an absolute path, as a Nix path).
pub fn apply_expr(user: &str, guest_dir: &Path) -> String {
    format!(
        "f: f {{ user = {}; guestDir = /. + {}; }}",
        nix_string(user),
        nix_string(&guest_dir.display().to_string())
    )
}

/// Arguments of `nix` (without the program name) for the check of `user`.
pub fn eval_argv(
    flake: &str,
    arch: Arch,
    user: &str,
    guest_dir: &Path,
    extra: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = [
        "--extra-experimental-features",
        "nix-command flakes",
        "eval",
        "--json",
        "--impure",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!(
        "{flake}#legacyPackages.{}.bootstrapSeedCheck",
        arch.nix_system()
    ));
    v.push("--apply".into());
    v.push(apply_expr(user, guest_dir));
    v.extend(extra.iter().cloned());
    v
}

/// The two drvPaths of one user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Paths {
    pub seeded: String,
    pub guest: String,
}

/// `Ok` when `nix eval`'s JSON shows one system, else the error naming both.
pub fn compare(user: &str, arch: Arch, json: &str) -> anyhow::Result<Paths> {
    let p: Paths = serde_json::from_str(json.trim()).map_err(|e| {
        anyhow::anyhow!("nix eval of bootstrapSeedCheck: expected {{\"seeded\":…,\"guest\":…}}, seen {json:?}: {e}")
    })?;
    if p.seeded != p.guest {
        anyhow::bail!(
            "the bootstrap system seeded into the NixOS test image ({arch}, agent user {user}) is not the one the guest \
             evaluates from the user-data's configuration.nix, so the guest would have to build it offline:\n  \
             seeded (nixos-vm/flake.nix bootstrapFor): {}\n  \
             guest (configuration.nix via root's channel): {}\n\
             compare them with `nix derivation show` / `nix-diff`",
            p.seeded,
            p.guest
        );
    }
    Ok(p)
}

/// Render the bootstrap's user-data for `user` with real Terraform (any
/// variant of `arch`: the module's files do not depend on it) and return the
/// files it writes.
pub async fn rendered_guest_files(
    root: &Path,
    arch: Arch,
    user: &str,
) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let variants = crate::template::values::discover_repo(root)?;
    let v = variants
        .iter()
        .find(|v| v.arch == arch)
        .ok_or_else(|| anyhow::anyhow!("values/: expected a variant for {arch}, seen none"))?;
    let vars = BTreeMap::from([("agent_user".to_string(), user.to_string())]);
    let user_data = crate::template::render::render_user_data(root, v, &vars).await?;
    guest_files(&user_data)
}

/// The whole check for `arch` and every seeded user against `flake`
/// (`<root>/nixos-vm` by default), with extra `nix` arguments.  Prints what
/// it runs; the drvPaths per user, or the first mismatch.
pub async fn run(
    root: &Path,
    flake: &str,
    arch: Arch,
    extra: &[String],
) -> anyhow::Result<Vec<(String, Paths)>> {
    let (nix, version) = super::check_nix()?;
    let tmp = tempfile::tempdir()?;
    let mut out = Vec::new();
    for user in SEEDED_USERS {
        let files = rendered_guest_files(root, arch, user).await?;
        let dir: PathBuf = tmp.path().join(user).join("coder-bootstrap");
        write_guest_dir(&dir, &files)?;
        let argv = eval_argv(flake, arch, user, &dir, extra);
        eprintln!("[seed-check] nix {version}: nix {}", argv.join(" "));
        let o = tokio::process::Command::new(&nix)
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .await?;
        if !o.status.success() {
            anyhow::bail!(
                "nix eval of the seed check ({arch}, user {user}) failed ({}):\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let p = compare(user, arch, &String::from_utf8_lossy(&o.stdout))?;
        out.push((user.to_string(), p));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_are_shown_when_they_differ() {
        let same =
            r#"{"guest":"/nix/store/a-nixos-system.drv","seeded":"/nix/store/a-nixos-system.drv"}"#;
        assert_eq!(
            compare("coder", Arch::X86_64, same).unwrap().guest,
            "/nix/store/a-nixos-system.drv"
        );
        let e = compare(
            "dev",
            Arch::Aarch64,
            r#"{"guest":"/nix/store/g.drv","seeded":"/nix/store/s.drv"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nix/store/g.drv")
                && e.contains("/nix/store/s.drv")
                && e.contains("dev")
                && e.contains("aarch64"),
            "{e}"
        );
        assert!(compare("coder", Arch::X86_64, "nope").is_err());
    }

    #[test]
    fn the_apply_expression_quotes_the_user_and_the_path() {
        let e = apply_expr("a\"b", Path::new("/tmp/x y/${z}"));
        assert_eq!(
            e,
            r#"f: f { user = "a\"b"; guestDir = /. + "/tmp/x y/\${z}"; }"#
        );
        let argv = eval_argv(
            "/r/nixos-vm",
            Arch::X86_64,
            "coder",
            Path::new("/d"),
            &["--offline".into()],
        );
        assert!(argv.contains(&"--impure".to_string()));
        assert!(argv
            .contains(&"/r/nixos-vm#legacyPackages.x86_64-linux.bootstrapSeedCheck".to_string()));
        assert_eq!(argv.last().unwrap(), "--offline");
    }

    /// The template's `unpack()` gunzips: the files come out as text (the
    /// merge of issue 20's gzip payloads broke exactly this).
    #[test]
    fn guest_files_follow_the_scripts_unpack() {
        use std::io::Write as _;
        let gz = |t: &str| {
            let mut c = Command::new("gzip")
                .arg("-c")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
            let o = c.wait_with_output().unwrap();
            base64::engine::general_purpose::STANDARD.encode(o.stdout)
        };
        let ud = format!(
            "unpack() {{ printf '%s' \"$1\" | base64 -d | gzip -dc > \"$2\"; }}\n\
             unpack '{}' \"$conf/params.json\"\n\
             unpack '{}' \"$conf/bootstrap.nix\"\n\
             unpack '{}' \"$conf/configuration.nix\"\n",
            gz("{}"),
            gz("{ }"),
            gz("{ imports = [ ./bootstrap.nix ]; }")
        );
        let f = guest_files(&ud).unwrap();
        assert_eq!(
            f["configuration.nix"],
            b"{ imports = [ ./bootstrap.nix ]; }"
        );
        // Without the gunzip in unpack(), the same payloads stay gzip bytes.
        let plain = ud.replace(" | gzip -dc", "");
        let f = guest_files(&plain).unwrap();
        assert_eq!(&f["params.json"][..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn guest_files_need_all_three() {
        let ud = "unpack 'eyJhIjoxfQ==' \"$conf/params.json\"\n";
        let e = guest_files(ud).unwrap_err().to_string();
        assert!(e.contains("configuration.nix"), "{e}");
    }
}
