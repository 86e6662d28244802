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
    let pkgs = |names: &[&str], sub: &str| {
        names
            .iter()
            .map(|n| format!("$(readlink /etc/contract/packages/{n})/{sub}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let expected = ok(
        p,
        &format!(
            "echo \"{}:{}:{}\"",
            pkgs(super::AMAZON_INIT_PATH, "bin"),
            pkgs(super::SERVICE_PATH, "bin"),
            pkgs(super::SERVICE_PATH, "sbin")
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
    let sd = ok(p, "readlink /etc/contract/packages/systemd").await?;
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
    // nixos-rebuild-ng exits with switch-to-configuration's status (4) and
    // names the command that failed (nixos_rebuild/__init__.py).
    if st != 4 {
        bad.push(format!(
            "nixos-rebuild must exit 4 (switch-to-configuration's status) when a unit fails, exited {st}"
        ));
    }
    if !out.contains("warning: the following units failed: contract-selftest-fails.service") {
        bad.push("the output should name the failed unit".into());
    }
    if !out.contains("--unit=nixos-rebuild-switch-to-configuration")
        || !out.contains("switch' returned non-zero exit status 4.")
    {
        bad.push(
            "the output should end with nixos-rebuild-ng's `Command 'systemd-run … \
             --unit=nixos-rebuild-switch-to-configuration …/bin/switch-to-configuration switch' \
             returned non-zero exit status 4.`"
                .into(),
        );
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
    // nixos-rebuild-ng: an evaluation error fails its re-exec step (the
    // build of config.system.build.nixos-rebuild), a build error the
    // toplevel's build; both exit with nix's status, 1 for `nix build`.
    for (name, needles) in [
        (
            "broken",
            [
                "does not exist",
                ".config.system.build.nixos-rebuild' --no-link' returned non-zero exit status 1.",
            ],
        ),
        (
            "broken-build",
            [
                "HARNESS-DELIBERATE-BUILD-FAILURE",
                ".config.system.build.toplevel' --no-link' returned non-zero exit status 1.",
            ],
        ),
    ] {
        let before = generation(p).await?;
        let (st, out) = rebuild(
            p,
            &format!("switch --flake path:{}#{name}", super::GUEST_FIXTURES),
        )
        .await?;
        if st != 1 || !out.contains("error:") || needles.iter().any(|n| !out.contains(n)) {
            bad.push(format!(
                "{name}: expected exit 1 with `error:` and {needles:?}, got exit {st}:\n{out}"
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

/// `name` in the declarations of the generation `/run/current-system` is.
pub async fn active_configuration(p: &dyn Probe) -> Result<String, String> {
    let out = ok(
        p,
        "sed -n 's/^NAME=//p' /run/current-system/plan.sh | tr -d \"'\"",
    )
    .await?;
    Ok(out.trim().to_string())
}

/// Wait for the transient switch unit (`nixos-rebuild-switch-to-configuration`)
/// to be gone: a switch whose caller died goes on in it.
async fn switch_unit_done(p: &dyn Probe) -> Result<(), String> {
    ok(
        p,
        "for i in $(seq 1 600); do systemctl is-active -q nixos-rebuild-switch-to-configuration.service || exit 0; sleep 0.2; done; exit 1",
    )
    .await
    .map(|_| ())
}

/// Item 1 + 2 of the contract: `nixos-rebuild switch` runs
/// switch-to-configuration in its own transient unit, and the fstab diff
/// stops a mount that disappeared — stopping first every unit that
/// Requires it.  The rebuild runs inside a caller unit with
/// `RequiresMountsFor=/home` (as the template's agent unit has): switching
/// to `no-home` must stop the caller (killing its nixos-rebuild) while the
/// switch itself completes and unmounts /home.  Leaves the guest on
/// `no-home` with /home unmounted.
pub async fn mount_removed_stops_its_users(p: &dyn Probe) -> Result<(), String> {
    let mut bad = Vec::new();
    let (st, _, _) = run(p, "findmnt -n /home >/dev/null").await?;
    if st != 0 {
        return Err("precondition: /home must be mounted".into());
    }
    ok(
        p,
        &format!(
            "rm -f /run/selftest-rebuild.log; systemd-run --quiet --unit=selftest-home-user \
             -p RequiresMountsFor=/home --working-directory=/home \
             -p StandardOutput=file:/run/selftest-rebuild.log -p StandardError=file:/run/selftest-rebuild.log \
             --setenv=CONTRACT_REBUILD_STEP=0.05 \
             /run/current-system/sw/bin/nixos-rebuild switch --flake path:{}#no-home",
            super::GUEST_FIXTURES
        ),
    )
    .await?;
    // The switch unit appears, then ends.
    ok(
        p,
        "for i in $(seq 1 300); do grep -q 'activating the configuration' /run/selftest-rebuild.log 2>/dev/null && exit 0; sleep 0.2; done; exit 1",
    )
    .await
    .map_err(|e| format!("the switch never reached activation: {e}"))?;
    switch_unit_done(p).await?;
    let log = ok(p, "cat /run/selftest-rebuild.log").await?;
    if !log.contains("stopping the following units: home.mount") {
        bad.push(
            "switch-to-configuration should stop home.mount (its fstab entry disappeared)".into(),
        );
    }
    let (st, _, _) = run(p, "findmnt -n /home >/dev/null").await?;
    if st == 0 {
        bad.push("/home should be unmounted after the switch".into());
    }
    let caller = ok(
        p,
        "systemctl show -P ActiveState selftest-home-user.service; true",
    )
    .await?;
    if caller.trim() == "active" {
        bad.push(format!(
            "the unit that requires /home should have been stopped with home.mount, it is {}",
            caller.trim()
        ));
    }
    if log.contains("Done. The new configuration is") {
        bad.push(
            "the nixos-rebuild client in the stopped unit should have died before printing Done"
                .into(),
        );
    }
    let active = active_configuration(p).await?;
    if active != "no-home" {
        bad.push(format!(
            "the switch runs outside its caller and must complete: /run/current-system is `{active}`, expected `no-home`"
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nrebuild log:\n{log}", bad.join("\n")))
    }
}

/// Item 2: a /home whose device is written differently is restarted, and
/// the units that require it restart with it.  From `good` (/dev/xvdb) to
/// `home-other-device` (/dev/vdb, the same disk).  Leaves the guest on
/// `home-other-device`.
pub async fn mount_changed_restarts_its_users(p: &dyn Probe) -> Result<(), String> {
    let mut bad = Vec::new();
    ok(
        p,
        "systemd-run --quiet --unit=selftest-home-sleeper -p RequiresMountsFor=/home \
         --working-directory=/home /run/current-system/sw/bin/sleep 100000",
    )
    .await?;
    let inv = ok(
        p,
        "sleep 0.5; systemctl show -P InvocationID selftest-home-sleeper.service",
    )
    .await?;
    let (st, out) = rebuild(
        p,
        &format!(
            "switch --flake path:{}#home-other-device",
            super::GUEST_FIXTURES
        ),
    )
    .await?;
    if st != 0 {
        bad.push(format!("the switch should succeed, exit {st}"));
    }
    if !out.contains("restarting the following units: home.mount") {
        bad.push("switch-to-configuration should restart home.mount (its device changed)".into());
    }
    let src = ok(p, "findmnt -n -o SOURCE /home; true").await?;
    if src.trim() != "/dev/vdb" {
        bad.push(format!(
            "/home should be mounted from /dev/vdb now, is `{}`",
            src.trim()
        ));
    }
    let inv2 = ok(
        p,
        "systemctl show -P InvocationID selftest-home-sleeper.service; systemctl show -P ActiveState selftest-home-sleeper.service",
    )
    .await?;
    let mut l = inv2.lines();
    let (now, state) = (l.next().unwrap_or(""), l.next().unwrap_or(""));
    if now == inv.trim() || state != "active" {
        bad.push(format!(
            "the unit that requires /home should have been restarted with home.mount (invocation {} -> {now}, {state})",
            inv.trim()
        ));
    }
    let _ = run(p, "systemctl stop selftest-home-sleeper.service").await;
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nrebuild output (exit {st}):\n{out}",
            bad.join("\n")
        ))
    }
}

/// Item 3: switch-to-configuration counts EVERY unit that failed on the
/// system during the switch, not only the generation's: a unit nobody's
/// configuration declares, which fails whenever it starts, makes a good
/// switch exit 4, naming it.
pub async fn unrelated_failed_unit_counts(p: &dyn Probe, fixture: &str) -> Result<(), String> {
    ok(p, UNRELATED_FAILING_UNIT).await?;
    let (st, out) = rebuild(
        p,
        &format!("switch --flake path:{}#{fixture}", super::GUEST_FIXTURES),
    )
    .await?;
    let _ = run(p, REMOVE_UNRELATED_FAILING_UNIT).await;
    if st == 4
        && out.contains("warning: the following units failed:")
        && out.contains("harness-unrelated.service")
    {
        Ok(())
    } else {
        Err(format!(
            "expected exit 4 naming harness-unrelated.service (a unit outside the generation that fails when it starts), got exit {st}:\n{out}"
        ))
    }
}

/// A unit outside every generation (a runtime unit in /run/systemd/system,
/// wanted by multi-user.target) that fails whenever it starts: the
/// switch's ResetFailed forgets its earlier failure, restarting
/// multi-user.target starts it again, and it fails during the switch, as
/// a broken hand-installed unit does on NixOS.
pub const UNRELATED_FAILING_UNIT: &str = "mkdir -p /run/systemd/system/multi-user.target.wants && \
printf '%s\\n' '[Unit]' 'Description=harness: a unit unrelated to the workspace that fails when it starts' \
'[Service]' 'Type=oneshot' \
\"ExecStart=/bin/sh -c 'echo harness: an unrelated unit failing on purpose; exit 3'\" \
>/run/systemd/system/harness-unrelated.service && \
ln -sfn ../harness-unrelated.service /run/systemd/system/multi-user.target.wants/harness-unrelated.service && \
systemctl daemon-reload && { systemctl start harness-unrelated.service 2>/dev/null; true; }";

/// Undo [`UNRELATED_FAILING_UNIT`].
pub const REMOVE_UNRELATED_FAILING_UNIT: &str = "rm -f /run/systemd/system/harness-unrelated.service \
/run/systemd/system/multi-user.target.wants/harness-unrelated.service && systemctl daemon-reload && \
systemctl reset-failed";

/// Item 4: a pre-switch check that fails aborts the switch AFTER
/// nixos-rebuild moved the system profile: a new generation, nothing
/// activated, the boot loader untouched.
pub async fn aborted_activation_moves_only_the_profile(p: &dyn Probe) -> Result<(), String> {
    let before = generation(p).await?;
    let cur = ok(
        p,
        "readlink -f /run/current-system; readlink -f /boot/contract-default",
    )
    .await?;
    let (st, out) = rebuild(
        p,
        &format!(
            "switch --flake path:{}#activation-aborts",
            super::GUEST_FIXTURES
        ),
    )
    .await?;
    let after = generation(p).await?;
    let now = ok(
        p,
        "readlink -f /run/current-system; readlink -f /boot/contract-default",
    )
    .await?;
    let mut bad = Vec::new();
    if st != 1 || !out.contains("Pre-switch checks failed") {
        bad.push(format!(
            "expected exit 1 with `Pre-switch checks failed`, got {st}"
        ));
    }
    if after == before {
        bad.push("nixos-rebuild sets the profile before switch-to-configuration: a new generation expected".into());
    }
    if now != cur {
        bad.push(format!(
            "/run/current-system and the boot loader's entry must not move ({cur} -> {now})"
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nrebuild output:\n{out}", bad.join("\n")))
    }
}

/// Item 5: the bootstrap switch evaluates configuration.nix too; one the
/// declaration data does not pin (here: without the amazon-image.nix
/// import) is refused like an evaluation error.
pub async fn unpinned_configuration_is_refused(p: &dyn Probe, dir: &str) -> Result<(), String> {
    ok(
        p,
        &format!(
            "mkdir -p /run/unpinned && cp {dir}/bootstrap.nix {dir}/params.json /run/unpinned/ && \
             grep -v amazon-image.nix {dir}/configuration.nix >/run/unpinned/configuration.nix"
        ),
    )
    .await?;
    let before = generation(p).await?;
    let (st, out) = rebuild(p, "switch -I nixos-config=/run/unpinned/configuration.nix").await?;
    if st == 1
        && out.contains("no declaration data for this configuration.nix")
        && generation(p).await? == before
    {
        Ok(())
    } else {
        Err(format!(
            "a configuration.nix without the amazon-image.nix import must not evaluate here (exit 1, `no declaration data for this configuration.nix`, no generation); got exit {st}:\n{out}"
        ))
    }
}

/// Item 6: NixOS has no FHS ELF interpreter; the guest's programs name
/// the loader outside /lib*, and the system path carries only NixOS's
/// base packages (no jq, no dpkg).
pub async fn nixos_binaries_only(p: &dyn Probe) -> Result<(), String> {
    let mut bad = Vec::new();
    let fhs = ok(
        p,
        "ls -d /lib*/ld-linux* /usr/lib*/ld-linux* 2>/dev/null; \
         find / -xdev -name 'ld-linux*' -not -path '/nix/*' 2>/dev/null; true",
    )
    .await?;
    if !fhs.trim().is_empty() {
        bad.push(format!("FHS ELF interpreters exist: {}", fhs.trim()));
    }
    let interp = ok(
        p,
        "b=$(readlink -f /run/current-system/sw/bin/bash); grep -c -a -e /lib64/ld-linux -e /lib/ld-linux-aarch64 \"$b\"; grep -c -a /nix/ld-linux \"$b\"; true",
    )
    .await?;
    let mut l = interp.lines();
    if l.next() != Some("0") || l.next() == Some("0") {
        bad.push(format!(
            "bash's ELF interpreter should be the store's loader (/nix/ld-linux…), not an FHS one: {interp}"
        ));
    }
    let sw = ok(
        p,
        ". /etc/profile; for t in jq dpkg run-parts debconf-show; do command -v $t; done; true",
    )
    .await?;
    if !sw.trim().is_empty() {
        bad.push(format!(
            "tools NixOS's base system does not have are on a login PATH: {}",
            sw.trim().replace('\n', ", ")
        ));
    }
    let has = ok(
        p,
        ". /etc/profile; for t in getent which awk perl ip; do command -v $t >/dev/null || echo $t; done; true",
    )
    .await?;
    if !has.trim().is_empty() {
        bad.push(format!(
            "NixOS's base system has these, the guest's sw does not: {}",
            has.trim().replace('\n', ", ")
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}
