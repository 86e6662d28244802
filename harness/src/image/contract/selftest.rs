//! Self-tests of the contract guest, one per contract point, run over the
//! probe shell of a booted guest (`harness/tests/contract_guest.rs`).  Each
//! returns `Err` naming what was expected and what the guest showed, and
//! each is shown to FAIL on a guest with that contract point broken.

use std::time::Duration;

use crate::machine::probe::Probe;

/// User-data for the self-test boot: records, from inside amazon-init,
/// PATH, NIX_PATH and which tools it can find, and counts the runs.
pub const USER_DATA: &str = r#"#!/usr/bin/env bash
d=/var/lib/contract-selftest
mkdir -p "$d"
echo run >>"$d/runs"
printf '%s\n' "$PATH" >"$d/path"
printf '%s\n' "$NIX_PATH" >"$d/nix_path"
for t in TOOLS; do
  if command -v "$t" >/dev/null 2>&1; then echo "$t yes"; else echo "$t no"; fi
done >"$d/tools"
echo "contract-selftest: user-data done"
"#;

/// Tools amazon-init's PATH must find (one per package on it).
pub const FOUND: &[&str] = &[
    "systemctl",
    "systemd-run",
    "grep",
    "git",
    "tar",
    "gzip",
    "sed",
    "xz",
    "nixos-rebuild",
    "ls",
    "base64",
    "mktemp",
    "find",
];
/// Tools outside amazon-init's PATH: it must NOT find them.
pub const NOT_FOUND: &[&str] = &[
    "curl", "sudo", "bash", "sh", "jq", "awk", "mount", "ip", "ssh", "useradd",
];

/// [`USER_DATA`] with the tool list filled in.
pub fn user_data() -> String {
    let tools: Vec<&str> = FOUND.iter().chain(NOT_FOUND).copied().collect();
    USER_DATA.replace("TOOLS", &tools.join(" "))
}

const T: Duration = Duration::from_secs(120);

async fn run(p: &dyn Probe, cmd: &str) -> Result<(i32, String, String), String> {
    let o = p.exec(cmd, T).await.map_err(|e| format!("probe: {e}"))?;
    Ok((o.status, o.stdout, o.stderr))
}

async fn ok(p: &dyn Probe, cmd: &str) -> Result<String, String> {
    let (st, out, err) = run(p, cmd).await?;
    if st != 0 {
        return Err(format!(
            "`{cmd}` exited {st}, expected 0\nstdout: {out}\nstderr: {err}"
        ));
    }
    Ok(out)
}

/// Point 1: amazon-init ran the `#!` user-data with exactly amazon-init.nix's
/// PATH (package order, then the default service PATH) and NIX_PATH; the
/// tools on it are found and nothing else is.  Reads what [`user_data`]
/// recorded in `dir` (default `/var/lib/contract-selftest`).
pub async fn amazon_init_path(p: &dyn Probe, dir: &str) -> Result<(), String> {
    let path = ok(p, &format!("cat {dir}/path")).await?;
    let expected = ok(
        p,
        &format!(
            "jq -r '[{a}] + [{s}] + [{s2}] | join(\":\")' /etc/contract/store-paths.json",
            a = super::AMAZON_INIT_PATH
                .iter()
                .map(|n| format!(".[\"{n}\"] + \"/bin\""))
                .collect::<Vec<_>>()
                .join(", "),
            s = super::SERVICE_PATH
                .iter()
                .map(|n| format!(".[\"{n}\"] + \"/bin\""))
                .collect::<Vec<_>>()
                .join(", "),
            s2 = super::SERVICE_PATH
                .iter()
                .map(|n| format!(".[\"{n}\"] + \"/sbin\""))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    )
    .await?;
    if path.trim() != expected.trim() {
        return Err(format!(
            "amazon-init's PATH differs from amazon-init.nix's:\n  expected {}\n  seen     {}",
            expected.trim(),
            path.trim()
        ));
    }
    let nix_path = ok(p, &format!("cat {dir}/nix_path")).await?;
    if !nix_path.contains("nixos-config=/etc/nixos/configuration.nix") {
        return Err(format!(
            "amazon-init's NIX_PATH lacks nixos-config: {nix_path}"
        ));
    }
    let tools = ok(p, &format!("cat {dir}/tools")).await?;
    let mut bad = Vec::new();
    for t in FOUND {
        if !tools.lines().any(|l| l == format!("{t} yes")) {
            bad.push(format!("{t} should be found"));
        }
    }
    for t in NOT_FOUND {
        if !tools.lines().any(|l| l == format!("{t} no")) {
            bad.push(format!("{t} must NOT be found"));
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "tools seen by amazon-init's user-data: {} (recorded:\n{tools})",
            bad.join(", ")
        ));
    }
    Ok(())
}

/// Point 2: a transient unit without PATH finds no sh, curl or sudo, and
/// its PATH is systemd's own bin (it still finds systemctl).
pub async fn default_unit_path(p: &dyn Probe) -> Result<(), String> {
    let unit = |name: &str, cmd: &str| {
        format!(
            "rm -f /run/{name}.out; systemd-run --quiet --wait --collect --unit=contract-selftest-{name} \
             -p StandardOutput=file:/run/{name}.out -p StandardError=file:/run/{name}.out {cmd}; \
             echo \"rc=$?\"; cat /run/{name}.out"
        )
    };
    let mut bad = Vec::new();
    for tool in ["sh", "curl", "sudo"] {
        let out = ok(p, &unit(tool, &format!("/usr/bin/env {tool} --version"))).await?;
        if out.contains("rc=0") {
            bad.push(format!("a transient unit found `{tool}`:\n{out}"));
        }
    }
    let out = ok(p, &unit("systemctl", "/usr/bin/env systemctl --version")).await?;
    if !out.contains("rc=0") {
        bad.push(format!(
            "a transient unit must find systemd's own `systemctl`:\n{out}"
        ));
    }
    let sd = ok(p, "jq -r .systemd /etc/contract/store-paths.json").await?;
    let env = ok(
        p,
        &unit("printenv", "/run/current-system/sw/bin/printenv PATH"),
    )
    .await?;
    let want = format!("{}/bin/", sd.trim());
    if !env
        .lines()
        .any(|l| l.trim_end_matches('/') == want.trim_end_matches('/'))
    {
        bad.push(format!(
            "a transient unit's PATH should be systemd's bin ({want}), saw:\n{env}"
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

/// Point 3: NixOS's file-system layout.
pub async fn fs_layout(p: &dyn Probe) -> Result<(), String> {
    let mut bad = Vec::new();
    let fhs = ok(
        p,
        "for d in /bin /sbin /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin; do \
         [ -d $d ] && ls -A $d | sed \"s|^|$d/|\"; done; true",
    )
    .await?;
    let mut seen: Vec<&str> = fhs.lines().collect();
    seen.sort();
    if seen != ["/bin/sh", "/usr/bin/env"] {
        bad.push(format!(
            "FHS executables should be exactly /bin/sh and /usr/bin/env, saw {seen:?}"
        ));
    }
    let (st, out, err) = run(
        p,
        "printf '#!/bin/bash\\necho ran\\n' >/tmp/fhs-bash.sh; chmod +x /tmp/fhs-bash.sh; /tmp/fhs-bash.sh",
    )
    .await?;
    if st == 0 {
        bad.push(format!(
            "a `#!/bin/bash` script must fail as on NixOS, it ran: {out}{err}"
        ));
    }
    let suid = ok(
        p,
        "find / -xdev \\( -perm -4000 -o -perm -2000 \\) -type f 2>/dev/null; \
         find /run/wrappers/ \\( -perm -4000 -o -perm -2000 \\) -type f 2>/dev/null | sed 's|wrappers\\.[^/]*|wrappers.*|'",
    )
    .await?;
    let suid: Vec<&str> = suid.lines().collect();
    if suid.iter().any(|l| !l.starts_with("/run/wrappers/")) {
        bad.push(format!(
            "setuid/setgid files outside /run/wrappers: {suid:?}"
        ));
    }
    let sudo = ok(
        p,
        "stat -L -c '%U %a' /run/wrappers/bin/sudo; . /etc/profile; command -v sudo; \
         ls /run/current-system/sw/bin/curl /run/current-system/sw/bin/bash",
    )
    .await?;
    let mut l = sudo.lines();
    if l.next() != Some("root 4511") {
        bad.push(format!(
            "/run/wrappers/bin/sudo should be root-owned setuid (4511): {sudo}"
        ));
    }
    if l.next() != Some("/run/wrappers/bin/sudo") {
        bad.push(format!(
            "a login shell should find sudo in /run/wrappers/bin first: {sudo}"
        ));
    }
    let cur = ok(
        p,
        "readlink -f /run/current-system; readlink -f /nix/var/nix/profiles/system",
    )
    .await?;
    let mut c = cur.lines();
    let (a, b) = (c.next().unwrap_or(""), c.next().unwrap_or(""));
    if a != b || !a.starts_with("/nix/store/") {
        bad.push(format!(
            "/run/current-system ({a}) should be the system profile ({b}) in /nix/store"
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

/// The home disk: `/dev/xvdb` names the virtio disk whose serial is the
/// volume id.
pub async fn home_disk_name(p: &dyn Probe) -> Result<(), String> {
    let out = ok(
        p,
        "d=$(readlink -f /dev/xvdb) && cat /sys/block/${d#/dev/}/serial",
    )
    .await?;
    if !out.trim().starts_with("vol") {
        return Err(format!("/dev/xvdb is not the vol-… disk: {out}"));
    }
    Ok(())
}

/// Runs `nixos-rebuild ARGS` (fast steps) and returns (status, output).
pub async fn rebuild(p: &dyn Probe, args: &str) -> Result<(i32, String), String> {
    let (st, out, err) = run(
        p,
        &format!("CONTRACT_REBUILD_STEP=0.05 /run/current-system/sw/bin/nixos-rebuild {args} 2>&1"),
    )
    .await?;
    Ok((st, format!("{out}{err}")))
}

/// The generation `/nix/var/nix/profiles/system` points at (`system-N-link`).
pub async fn generation(p: &dyn Probe) -> Result<String, String> {
    Ok(ok(p, "readlink /nix/var/nix/profiles/system")
        .await?
        .trim()
        .to_string())
}

/// Point 4a: the bootstrap switch (data from `dir/params.json`) creates the
/// agent user with its home, sudo rule and a new generation, THEN mounts
/// /home from the blank /dev/xvdb (formatted), hiding the home beneath.
pub async fn bootstrap_switch(p: &dyn Probe, dir: &str, user: &str) -> Result<(), String> {
    let before = generation(p).await?;
    let (st, out) = rebuild(
        p,
        &format!("switch -I nixos-config={dir}/configuration.nix"),
    )
    .await?;
    if st != 0 {
        return Err(format!("bootstrap switch exited {st}:\n{out}"));
    }
    let mut bad = Vec::new();
    let after = generation(p).await?;
    if after == before {
        bad.push(format!("no new generation (still {after})"));
    }
    let id = ok(
        p,
        &format!("id -u {user}; id -nG {user}; getent passwd {user} | cut -d: -f6,7"),
    )
    .await?;
    let mut l = id.lines();
    if l.next() != Some("1000") {
        bad.push(format!("{user} should get uid 1000: {id}"));
    }
    if !l.next().unwrap_or("").split(' ').any(|g| g == "wheel") {
        bad.push(format!("{user} should be in wheel: {id}"));
    }
    if l.next() != Some(&format!("/home/{user}:/run/current-system/sw/bin/bash")[..]) {
        bad.push(format!("{user}'s home/shell: {id}"));
    }
    let m = ok(
        p,
        "findmnt -n -o SOURCE,FSTYPE /home; readlink -f /dev/xvdb",
    )
    .await?;
    let mut ml = m.lines();
    let (src, dev) = (ml.next().unwrap_or(""), ml.next().unwrap_or("-"));
    if src != format!("{dev} ext4") {
        bad.push(format!(
            "/home should be {dev} (ext4) mounted by the switch: {m}"
        ));
    }
    let hidden = ok(
        p,
        &format!(
            "test -e /home/{user} && echo visible || echo hidden; mkdir -p /mnt/rootfs; \
             mount --bind / /mnt/rootfs; stat -c '%U %a' /mnt/rootfs/home/{user}; umount /mnt/rootfs"
        ),
    )
    .await?;
    if hidden.lines().next() != Some("hidden")
        || hidden.lines().nth(1) != Some(&format!("{user} 700")[..])
    {
        bad.push(format!(
            "activation should create /home/{user} (owner {user}, 700) on the root disk, THEN the \
             /home mount should hide it: {hidden}"
        ));
    }
    let sudo = ok(
        p,
        &format!(
            "/run/wrappers/bin/su -s /bin/sh {user} -c '/run/wrappers/bin/sudo -n id -u' 2>&1"
        ),
    )
    .await?;
    if sudo.trim() != "0" {
        bad.push(format!(
            "{user} should have passwordless sudo (wheel): {sudo}"
        ));
    }
    if !out.contains("building the system configuration") {
        bad.push(format!("no build log lines:\n{out}"));
    }
    let git = run(p, "test -x /run/current-system/sw/bin/git").await?;
    if git.0 != 0 {
        bad.push("bootstrap's environment.systemPackages (git) not in the new sw".into());
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nrebuild output:\n{out}", bad.join("\n")))
    }
}

/// Declaration data for a test configuration written into the guest:
/// keeps `keep` (normal user), drops every other previously declared
/// user, gives `keep` a per-user package and declares a unit that fails.
pub fn failing_unit_declares(keep: &str) -> String {
    serde_json::json!({
        "name": "selftest-failing-unit",
        "users": { keep: { "isNormalUser": true, "extraGroups": ["wheel"], "packages": ["jq"] } },
        "wheelNeedsPassword": false,
        "services": {
            "contract-selftest-fails": {
                "script": "echo failing on purpose; exit 3",
                "serviceConfig": { "Type": "oneshot" }
            }
        }
    })
    .to_string()
}

/// Point 4b: a configuration with a failing unit switches (new generation
/// active, users applied: `removed` gone, `keep`'s per-user profile) and
/// THEN nixos-rebuild exits non-zero, naming the unit.
pub async fn failing_unit_switch(p: &dyn Probe, keep: &str, removed: &str) -> Result<(), String> {
    let data = failing_unit_declares(keep);
    ok(
        p,
        &format!(
            "mkdir -p /var/lib/harness/fixtures/selftest && cat >/var/lib/harness/fixtures/selftest/declares.json <<'EOF'\n{data}\nEOF"
        ),
    )
    .await?;
    let before = generation(p).await?;
    let (st, out) = rebuild(p, "switch --flake path:/var/lib/harness/fixtures#selftest").await?;
    let mut bad = Vec::new();
    if st == 0 {
        bad.push("nixos-rebuild must exit non-zero when a unit fails".to_string());
    }
    if !out.contains("contract-selftest-fails.service") {
        bad.push("the output should name the failed unit".into());
    }
    let after = generation(p).await?;
    let cur = ok(
        p,
        "readlink -f /run/current-system; readlink -f /nix/var/nix/profiles/system",
    )
    .await?;
    let mut c = cur.lines();
    if after == before || c.next() != c.next() {
        bad.push(format!(
            "the new generation must be active despite the failed unit ({before} -> {after}; {cur})"
        ));
    }
    if run(p, &format!("id {removed}")).await?.0 == 0 {
        bad.push(format!(
            "{removed} (declared by the previous generation only) should be removed"
        ));
    }
    if run(p, &format!("id {keep}")).await?.0 != 0 {
        bad.push(format!("{keep} should still exist"));
    }
    if run(p, &format!("test -x /etc/profiles/per-user/{keep}/bin/jq"))
        .await?
        .0
        != 0
    {
        bad.push(format!("/etc/profiles/per-user/{keep}/bin/jq should exist"));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nrebuild output (exit {st}):\n{out}",
            bad.join("\n")
        ))
    }
}

/// Point 4c: `broken` fails like an evaluation error, `broken-build` like a
/// build error; neither makes a generation.
pub async fn broken_fixtures(p: &dyn Probe) -> Result<(), String> {
    let mut bad = Vec::new();
    for (name, needle) in [
        ("broken", "does not exist"),
        ("broken-build", "failed with exit code 1"),
    ] {
        let before = generation(p).await?;
        let (st, out) = rebuild(
            p,
            &format!("switch --flake path:{}#{name}", super::GUEST_FIXTURES),
        )
        .await?;
        if st == 0 || !out.contains("error:") || !out.contains(needle) {
            bad.push(format!(
                "{name}: expected a non-zero exit with `error:` and `{needle}`, got exit {st}:\n{out}"
            ));
        }
        if generation(p).await? != before {
            bad.push(format!("{name} must not create a generation"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}
