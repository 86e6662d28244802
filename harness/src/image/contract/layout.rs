//! The NixOS file-system layout made from unpacked Debian packages:
//! every executable moves out of the FHS bin directories into a store-like
//! `/nix/store/<hash>-<name>-<version>/bin` per nixpkgs package; `/bin/sh`
//! and `/usr/bin/env` are the only FHS executables left (as on NixOS);
//! setuid bits are stripped (NixOS's store has none: setuid programs are
//! the wrappers the activation copies into `/run/wrappers/bin`); and the
//! guest's own unit files and udev rules are rewritten to the new absolute
//! paths, as NixOS units name store paths.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// FHS directories whose executables move into the store.
pub const BIN_DIRS: &[&str] = &[
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "usr/games",
    "usr/local/bin",
    "usr/local/sbin",
];

/// Nix's base-32 alphabet (no e, o, t, u), for store-like hashes.
const NIX32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// A 32-character store hash of `parts`.
pub fn store_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .take(32)
        .map(|b| NIX32[(*b as usize) % 32] as char)
        .collect()
}

/// Files of one .deb (paths relative to `/`, without `./`).
pub fn deb_files(deb: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .with_context(|| format!("cannot run dpkg-deb -c {}", deb.display()))?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -c {} failed: {}",
            deb.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(parse_listing(&String::from_utf8_lossy(&out.stdout)))
}

/// Paths from a `dpkg-deb -c` listing (directories excluded).
pub fn parse_listing(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| p.strip_prefix("./"))
        .filter(|p| !p.is_empty() && !p.ends_with('/'))
        .map(str::to_string)
        .collect()
}

/// `dir/name` if `path` is directly in one of [`BIN_DIRS`].
pub fn in_bin_dir(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.rsplit_once('/')?;
    BIN_DIRS.contains(&dir).then_some((dir, name))
}

/// `path` (absolute, in the guest) with `.`/`..` resolved lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(s) => out.push(s),
            _ => {}
        }
    }
    out
}

/// One executable to move: owning nixpkgs package, original guest path.
#[derive(Debug, Clone)]
pub struct Exe {
    pub group: String,
    pub path: String,
}

/// The result of relocation: store directory per package group, and where
/// each executable name ended up.
#[derive(Debug, Default)]
pub struct Store {
    /// nixpkgs name -> `/nix/store/<hash>-<name>-<version>` (guest path).
    pub groups: BTreeMap<String, String>,
    /// Original guest path (`/usr/bin/ls`) -> new guest path.
    pub moved: HashMap<String, String>,
}

impl Store {
    /// The new path of executable `name`, looked up like a merged-/usr
    /// system would find `/bin/name`, `/usr/bin/name`, `/sbin/name`….
    pub fn find(&self, name: &str) -> Option<&String> {
        BIN_DIRS
            .iter()
            .find_map(|d| self.moved.get(&format!("/{d}/{name}")))
    }
}

/// Moves every executable in `exes` out of `root`'s FHS bin directories
/// into `root/nix/store/<group dir>/bin`, where `dirs` names each group's
/// store directory (relative to `/`).  Symlinks are re-pointed at the
/// moved target; setuid/setgid bits are dropped.
pub fn relocate(
    root: &Path,
    exes: &[Exe],
    dirs: &BTreeMap<String, String>,
) -> anyhow::Result<Store> {
    let mut store = Store {
        groups: dirs
            .iter()
            .map(|(g, d)| (g.clone(), format!("/{d}")))
            .collect(),
        moved: HashMap::new(),
    };
    for d in dirs.values() {
        std::fs::create_dir_all(root.join(d).join("bin"))?;
    }
    // Pass 1: the new location of each path (merged /usr: /bin/x == /usr/bin/x).
    let mut plan = Vec::new();
    for e in exes {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        let dir = dirs
            .get(&e.group)
            .with_context(|| format!("no store directory for package group {}", e.group))?;
        let new = format!("/{dir}/bin/{name}");
        store.moved.insert(format!("/{}", e.path), new.clone());
        plan.push((e.path.clone(), new));
    }
    // Aliases: the other spelling of each path under merged /usr.
    let aliases: Vec<(String, String)> = store
        .moved
        .iter()
        .filter_map(|(old, new)| {
            let alt = if let Some(rest) = old.strip_prefix("/usr/") {
                format!("/{rest}")
            } else {
                format!("/usr{old}")
            };
            (!store.moved.contains_key(&alt)).then(|| (alt, new.clone()))
        })
        .collect();
    store.moved.extend(aliases);
    // Pass 2: move regular files, re-point symlinks.
    for (old, new) in &plan {
        let src = root.join(old);
        let dst = root.join(new.trim_start_matches('/'));
        let meta = match src.symlink_metadata() {
            Ok(m) => m,
            Err(_) => continue, // listed but not unpacked (replaced by a later package)
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src)?;
            let abs = if target.is_absolute() {
                normalize(&target)
            } else {
                let parent = Path::new("/").join(old);
                normalize(&parent.parent().unwrap_or(Path::new("/")).join(&target))
            };
            let abs_s = abs.to_string_lossy().to_string();
            let to = store.moved.get(&abs_s).cloned().unwrap_or(abs_s);
            if &to == new {
                // Another spelling of the same program (/sbin/ip -> /bin/ip):
                // the store already has it under this name.
                std::fs::remove_file(&src)?;
                continue;
            }
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(&to, &dst)
                .with_context(|| format!("symlink {} -> {to}", dst.display()))?;
            std::fs::remove_file(&src)?;
        } else if meta.is_file() {
            let _ = std::fs::remove_file(&dst);
            std::fs::rename(&src, &dst)
                .with_context(|| format!("move {} to {}", src.display(), dst.display()))?;
            let mode = meta.permissions().mode() & 0o1777;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode & !0o6000))?;
        }
    }
    Ok(store)
}

/// Re-points every symlink in `root` (outside the store) whose target was
/// moved, e.g. Debian's `/lib/systemd/systemd-udevd -> ../../bin/udevadm`.
/// Returns how many were re-pointed.
pub fn repoint_links(root: &Path, store: &Store) -> anyhow::Result<usize> {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d == root.join("nix") {
            continue;
        }
        for e in std::fs::read_dir(&d)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_symlink() {
                let target = std::fs::read_link(e.path())?;
                let guest = Path::new("/").join(e.path().strip_prefix(root)?);
                let abs = if target.is_absolute() {
                    normalize(&target)
                } else {
                    normalize(&guest.parent().unwrap_or(Path::new("/")).join(&target))
                };
                if let Some(to) = store.moved.get(abs.to_string_lossy().as_ref()) {
                    std::fs::remove_file(e.path())?;
                    std::os::unix::fs::symlink(to, e.path())?;
                    n += 1;
                }
            }
        }
    }
    Ok(n)
}

/// Empties the FHS bin directories (whatever no package listed), removes
/// all but `/bin` and `/usr/bin`, and makes `/bin/sh` and `/usr/bin/env`,
/// the only two FHS executables NixOS has.
pub fn fhs_links(root: &Path, sh: &str, env: &str) -> anyhow::Result<()> {
    for d in BIN_DIRS {
        let p = root.join(d);
        if p.symlink_metadata().is_ok() {
            if p.symlink_metadata()?.file_type().is_symlink() {
                std::fs::remove_file(&p)?;
            } else {
                std::fs::remove_dir_all(&p)?;
            }
        }
    }
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::create_dir_all(root.join("usr/bin"))?;
    std::os::unix::fs::symlink(sh, root.join("bin/sh"))?;
    std::os::unix::fs::symlink(env, root.join("usr/bin/env"))?;
    Ok(())
}

/// Rewrites `/bin/x`, `/usr/sbin/x`… in `text` to the moved location of
/// `x` (unit files, udev rules, D-Bus service files).  `/bin/sh` and
/// `/usr/bin/env` stay (they exist); unknown names stay.
pub fn rewrite_paths(text: &str, store: &Store) -> String {
    // Group 1: what precedes the path, so the tail of a longer path
    // (/opt/usr/bin/x) never matches.
    let re =
        regex::Regex::new(r"(?m)(^|[^A-Za-z0-9._/])((?:/usr)?(?:/local)?/s?bin/[A-Za-z0-9._+\-]+)")
            .expect("regex");
    let text = re.replace_all(text, |c: &regex::Captures| {
        let (pre, m) = (&c[1], &c[2]);
        if m == "/bin/sh" || m == "/usr/bin/env" {
            return format!("{pre}{m}");
        }
        let to = store.moved.get(m).map(String::as_str).unwrap_or(m);
        format!("{pre}{to}")
    });
    // Unit `Exec*=` lines may name a bare command (`ExecStart=systemd-tmpfiles
    // …`), which systemd resolves in its compiled-in FHS search path; NixOS
    // units name store paths, and so do these after the rewrite.
    let bare = regex::Regex::new(r"(?m)^(Exec[A-Za-z]*=[-@:+!|]*)([A-Za-z0-9._+\-]+)(\s|$)")
        .expect("regex");
    bare.replace_all(&text, |c: &regex::Captures| match store.find(&c[2]) {
        Some(to) => format!("{}{to}{}", &c[1], &c[3]),
        None => c[0].to_string(),
    })
    .into_owned()
}

/// Applies [`rewrite_paths`] to every regular file under `dirs` of `root`.
pub fn rewrite_tree(root: &Path, dirs: &[&str], store: &Store) -> anyhow::Result<usize> {
    let mut n = 0;
    for d in dirs {
        let mut stack = vec![root.join(d)];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_file() {
                    let Ok(text) = std::fs::read_to_string(e.path()) else {
                        continue;
                    };
                    let new = rewrite_paths(&text, store);
                    if new != text {
                        std::fs::write(e.path(), new)?;
                        n += 1;
                    }
                }
            }
        }
    }
    Ok(n)
}

/// The FHS ELF interpreter (`PT_INTERP`) of glibc programs on `arch`, and
/// the short non-FHS path the contract guest uses instead (no longer than
/// the FHS one, so it is rewritten in place).
pub fn interpreters(arch: crate::template::variant::Arch) -> (&'static str, &'static str) {
    match arch {
        crate::template::variant::Arch::X86_64 => {
            ("/lib64/ld-linux-x86-64.so.2", "/nix/ld-linux-x86-64.so.2")
        }
        crate::template::variant::Arch::Aarch64 => {
            ("/lib/ld-linux-aarch64.so.1", "/nix/ld-linux-aarch64.so.1")
        }
    }
}

/// Rewrites `PT_INTERP` of a 64-bit little-endian ELF image from `old` to
/// `new` (NUL-padded; `new` no longer than `old`).  Returns whether it did.
pub fn rewrite_interp(elf: &mut [u8], old: &str, new: &str) -> anyhow::Result<bool> {
    anyhow::ensure!(
        new.len() <= old.len(),
        "interpreter {new} is longer than {old}"
    );
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Ok(false);
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(elf, 0x20), u16_at(elf, 0x36), u16_at(elf, 0x38));
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if ph + 56 > elf.len() {
            break;
        }
        if u32::from_le_bytes([elf[ph], elf[ph + 1], elf[ph + 2], elf[ph + 3]]) != 3 {
            continue; // not PT_INTERP
        }
        let (off, size) = (u64_at(elf, ph + 8), u64_at(elf, ph + 32));
        if off + size > elf.len() || size == 0 {
            return Ok(false);
        }
        let cur = &elf[off..off + size];
        let end = cur.iter().position(|b| *b == 0).unwrap_or(size);
        if &cur[..end] != old.as_bytes() {
            return Ok(false);
        }
        let slot = &mut elf[off..off + size];
        slot.fill(0);
        slot[..new.len()].copy_from_slice(new.as_bytes());
        return Ok(true);
    }
    Ok(false)
}

/// NixOS has no FHS ELF interpreter: moves glibc's loader into the store
/// package `libc_dir` (`<libc_dir>/lib/<loader>`), links the short path
/// from [`interpreters`] to it, removes every `ld-linux*` outside the
/// store, and re-points every ELF program under `root` at it.  Returns how
/// many programs were re-pointed.
pub fn retarget_interpreter(
    root: &Path,
    arch: crate::template::variant::Arch,
    libc_dir: &str,
) -> anyhow::Result<usize> {
    let (old, new) = interpreters(arch);
    let loader = old.rsplit('/').next().unwrap_or(old);
    // The real file: /lib/<multiarch>/<loader> (what /lib64/… links to).
    let mut real = None;
    for d in ["lib", "usr/lib", "lib64"] {
        let Ok(rd) = std::fs::read_dir(root.join(d)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            for cand in [p.join(loader), p.clone()] {
                if cand.file_name().and_then(|n| n.to_str()) == Some(loader)
                    && cand.symlink_metadata().is_ok_and(|m| m.is_file())
                {
                    real = Some(cand);
                }
            }
        }
    }
    let real =
        real.with_context(|| format!("no {loader} (glibc's loader) in the root file system"))?;
    let store_loader = format!("{libc_dir}/lib/{loader}");
    let dst = root.join(store_loader.trim_start_matches('/'));
    std::fs::create_dir_all(dst.parent().unwrap())?;
    std::fs::rename(&real, &dst)?;
    let short = root.join(new.trim_start_matches('/'));
    let _ = std::fs::remove_file(&short);
    std::os::unix::fs::symlink(&store_loader, &short)?;
    // Every other ld-linux* outside the store (the /lib64 and /lib links).
    for d in ["lib", "lib64", "usr/lib", "usr/lib64"] {
        let mut stack = vec![root.join(d)];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if e.file_name().to_string_lossy().starts_with("ld-linux") {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
    }
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let p = e.path();
            let mut head = [0u8; 4];
            {
                use std::io::Read;
                let Ok(mut f) = std::fs::File::open(&p) else {
                    continue;
                };
                if f.read_exact(&mut head).is_err() || &head != b"\x7fELF" {
                    continue;
                }
            }
            let mut bytes = std::fs::read(&p)?;
            if rewrite_interp(&mut bytes, old, new)? {
                // Writable for the rewrite (an unprivileged build owns but
                // may not write a 0555 file), then the mode it had.
                let mode = e.metadata()?.permissions();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode.mode() | 0o200))?;
                std::fs::write(&p, &bytes).with_context(|| format!("rewrite {}", p.display()))?;
                std::fs::set_permissions(&p, mode)?;
                n += 1;
            }
        }
    }
    // glibc's ldd lists the loaders it tries (RTLDLIST).
    let ldd_old = old.to_string();
    let mut stack = vec![root.join("nix/store")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == "ldd" {
                if let Ok(t) = std::fs::read_to_string(e.path()) {
                    if t.contains(&ldd_old) {
                        let mode = e.metadata()?.permissions();
                        std::fs::set_permissions(
                            e.path(),
                            std::fs::Permissions::from_mode(mode.mode() | 0o200),
                        )?;
                        std::fs::write(e.path(), t.replace(&ldd_old, new))?;
                        std::fs::set_permissions(e.path(), mode)?;
                    }
                }
            }
        }
    }
    Ok(n)
}

/// Replaces `@name@` placeholders from `vars`; an unknown placeholder
/// (lower-case letters, digits and dashes between `@`s) is an error naming
/// the file.
pub fn substitute(
    file: &str,
    text: &str,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let re = regex::Regex::new(r"@([a-z0-9][a-z0-9-]*)@").expect("regex");
    let mut missing = Vec::new();
    let out = re.replace_all(text, |c: &regex::Captures| match vars.get(&c[1]) {
        Some(v) => v.clone(),
        None => {
            missing.push(c[1].to_string());
            c[0].to_string()
        }
    });
    if !missing.is_empty() {
        bail!(
            "contract guest file {file}: unknown placeholder(s) {}",
            missing
                .iter()
                .map(|m| format!("@{m}@"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_and_bin_dirs() {
        let out = "drwxr-xr-x root/root 0 2023-01-01 00:00 ./\n\
                   drwxr-xr-x root/root 0 2023-01-01 00:00 ./usr/bin/\n\
                   -rwxr-xr-x root/root 1 2023-01-01 00:00 ./usr/bin/sudo\n\
                   lrwxrwxrwx root/root 0 2023-01-01 00:00 ./usr/bin/sudoedit -> sudo\n\
                   -rw-r--r-- root/root 1 2023-01-01 00:00 ./usr/lib/sudo/x.so\n";
        let files = parse_listing(out);
        assert_eq!(
            files,
            vec!["usr/bin/sudo", "usr/bin/sudoedit", "usr/lib/sudo/x.so"]
        );
        assert_eq!(in_bin_dir("usr/bin/sudo"), Some(("usr/bin", "sudo")));
        assert_eq!(in_bin_dir("usr/lib/sudo/x.so"), None);
        assert_eq!(in_bin_dir("usr/bin/x/y"), None);
    }

    #[test]
    fn store_hashes_use_nix32_and_track_inputs() {
        let a = store_hash(&["coreutils", "9.1-1"]);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| NIX32.contains(&b)), "{a}");
        assert_ne!(a, store_hash(&["coreutils", "9.1-2"]));
    }

    #[test]
    fn relocation_moves_files_repoints_links_and_strips_setuid() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::write(r.join("usr/bin/sudo"), "elf").unwrap();
        std::fs::set_permissions(
            r.join("usr/bin/sudo"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::symlink("sudo", r.join("usr/bin/sudoedit")).unwrap();
        // Another spelling of the same program (Debian's /sbin/ip -> /bin/ip).
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("../bin/sudo", r.join("usr/sbin/sudo")).unwrap();
        std::fs::write(r.join("bin/bash"), "elf").unwrap();
        std::fs::write(r.join("usr/bin/stray"), "x").unwrap();
        let exes = vec![
            Exe {
                group: "sudo".into(),
                path: "usr/bin/sudo".into(),
            },
            Exe {
                group: "sudo".into(),
                path: "usr/bin/sudoedit".into(),
            },
            Exe {
                group: "sudo".into(),
                path: "usr/sbin/sudo".into(),
            },
            Exe {
                group: "bash".into(),
                path: "bin/bash".into(),
            },
        ];
        let mut dirs = BTreeMap::new();
        dirs.insert("sudo".into(), "nix/store/aaa-sudo-1".into());
        dirs.insert("bash".into(), "nix/store/bbb-bash-5".into());
        let store = relocate(r, &exes, &dirs).unwrap();
        let sudo = r.join("nix/store/aaa-sudo-1/bin/sudo");
        assert!(sudo.is_file());
        let mode = std::fs::metadata(&sudo).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid stripped");
        assert!(
            !std::fs::symlink_metadata(&sudo)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the program itself, not a link to itself"
        );
        assert_eq!(
            std::fs::read_link(r.join("nix/store/aaa-sudo-1/bin/sudoedit")).unwrap(),
            PathBuf::from("/nix/store/aaa-sudo-1/bin/sudo")
        );
        assert_eq!(
            store.find("bash").unwrap(),
            "/nix/store/bbb-bash-5/bin/bash"
        );
        assert_eq!(
            store.moved.get("/usr/bin/bash").unwrap(),
            "/nix/store/bbb-bash-5/bin/bash",
            "merged-/usr alias"
        );
        std::fs::create_dir_all(r.join("lib/systemd")).unwrap();
        std::os::unix::fs::symlink("../../usr/bin/sudo", r.join("lib/systemd/helper")).unwrap();
        assert_eq!(repoint_links(r, &store).unwrap(), 1);
        assert_eq!(
            std::fs::read_link(r.join("lib/systemd/helper")).unwrap(),
            PathBuf::from("/nix/store/aaa-sudo-1/bin/sudo")
        );
        fhs_links(r, "/nix/store/bbb-bash-5/bin/bash", "/nix/store/x/bin/env").unwrap();
        assert!(!r.join("usr/bin/stray").exists(), "FHS dirs emptied");
        let left: Vec<_> = std::fs::read_dir(r.join("bin"))
            .unwrap()
            .chain(std::fs::read_dir(r.join("usr/bin")).unwrap())
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(!r.join("sbin").exists());

        let unit = "ExecStart=-/sbin/agetty x\nExecStart=/usr/bin/sudo -i\nExecReload=sudo -V\nExecStop=-sudo\nDescription=sudo x\nExecStart=/bin/sh -c true\nX=/usr/bin/unknown\nY=/opt/usr/bin/sudo\n";
        let out = rewrite_paths(unit, &store);
        assert!(
            out.contains("ExecStart=/nix/store/aaa-sudo-1/bin/sudo -i"),
            "{out}"
        );
        assert!(out.contains("/bin/sh -c true"), "{out}");
        assert!(out.contains("X=/usr/bin/unknown"), "{out}");
        assert!(out.contains("-/sbin/agetty x"), "{out}");
        assert!(out.contains("Y=/opt/usr/bin/sudo"), "{out}");
        assert!(
            out.contains("ExecReload=/nix/store/aaa-sudo-1/bin/sudo -V"),
            "{out}"
        );
        assert!(
            out.contains("ExecStop=-/nix/store/aaa-sudo-1/bin/sudo\n"),
            "{out}"
        );
        assert!(out.contains("Description=sudo x"), "{out}");
    }

    #[test]
    fn the_elf_interpreter_is_rewritten_in_place() {
        // A minimal ELF64 LE header with one PT_INTERP program header.
        let old = "/lib64/ld-linux-x86-64.so.2";
        let mut elf = vec![0u8; 0x40 + 56 + 32];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 0x40;
        elf[ph..ph + 4].copy_from_slice(&3u32.to_le_bytes());
        let off = 0x40 + 56;
        elf[ph + 8..ph + 16].copy_from_slice(&(off as u64).to_le_bytes());
        elf[ph + 32..ph + 40].copy_from_slice(&((old.len() + 1) as u64).to_le_bytes());
        elf[off..off + old.len()].copy_from_slice(old.as_bytes());
        let new = "/nix/ld-linux-x86-64.so.2";
        assert!(rewrite_interp(&mut elf, old, new).unwrap());
        assert_eq!(&elf[off..off + new.len()], new.as_bytes());
        assert!(elf[off + new.len()..off + old.len() + 1]
            .iter()
            .all(|b| *b == 0));
        assert!(
            !rewrite_interp(&mut elf, old, new).unwrap(),
            "already rewritten"
        );
        assert!(rewrite_interp(&mut elf, new, "/a/much/longer/interpreter/path").is_err());
        assert!(!rewrite_interp(&mut b"#!/bin/sh\n".to_vec(), old, new).unwrap());
    }

    #[test]
    fn substitution_names_unknown_placeholders() {
        let mut v = BTreeMap::new();
        v.insert("bash".to_string(), "/nix/store/b-bash".to_string());
        assert_eq!(
            substitute("f", "#!@bash@/bin/bash @tsv \"@agent_user@\"", &v).unwrap(),
            "#!/nix/store/b-bash/bin/bash @tsv \"@agent_user@\""
        );
        let e = substitute("units/x", "@nope@ @bash@", &v).unwrap_err();
        assert!(e.to_string().contains("@nope@") && e.to_string().contains("units/x"));
    }
}
