//! `harness boot <variant> --image contract|nixos|<path> [--user-data FILE] [--run CMD]`:
//! boot one instance of a variant under QEMU with its own IMDS and home
//! disk; run one command through the probe, or attach an interactive shell.

use std::path::PathBuf;

use crate::image::{BootImage, ImageKind};
use crate::machine::instance::Instance;
use crate::machine::qemu::accel::AccelRequest;
use crate::machine::qemu::{BootOptions, QemuInstance};
use crate::{repo, template::values};

/// Arguments of `harness boot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Variant name (a values/*.yml file stem).
    pub variant: String,
    /// `contract` (the systemd guest keeping the NixOS AMI's contract; a
    /// double), `nixos`, or a path to a qcow2/raw image.
    #[arg(long, default_value = "contract")]
    pub image: String,
    /// User-data file served by the emulated IMDS.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Run this command as root in the guest, print its output, exit with its status.
    #[arg(long)]
    pub run: Option<String>,
    /// Accelerator: auto probes KVM and falls back to TCG; kvm fails if KVM does not work.
    #[arg(long, value_enum)]
    pub accel: Option<AccelRequest>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
}

/// Resolve `--image` to a bootable image for `arch`.
pub async fn resolve_image(
    root: &std::path::Path,
    spec: &str,
    arch: crate::template::variant::Arch,
) -> anyhow::Result<BootImage> {
    match spec {
        "contract" => {
            let root = root.to_path_buf();
            let img =
                tokio::task::spawn_blocking(move || crate::image::contract::build(&root, arch))
                    .await??;
            eprintln!(
                "image: {} (contract guest: a double of the NixOS AMI, not NixOS)",
                img.description
            );
            Ok(img)
        }
        "nixos" => {
            let root = root.to_path_buf();
            tokio::task::spawn_blocking(move || crate::image::nixos::image(&root, arch)).await?
        }
        path => crate::image::path::image(std::path::Path::new(path), arch, ImageKind::Path),
    }
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    let root = repo::root()?;
    let variant = values::find(&root, &args.variant)?;
    let image = resolve_image(&root, &args.image, variant.arch).await?;
    let artifacts = repo::target_dir(&root).join("boot").join(&variant.name);
    let mut opts = BootOptions::new(&artifacts);
    opts.label = variant.name.clone();
    opts.memory_mib = args.memory;
    opts.accel = match args.accel {
        Some(a) => a,
        None => AccelRequest::from_env()?,
    };
    if image.kind == ImageKind::Nixos {
        // The NixOS image is sized to its contents; give it room as the
        // e2e does (the guest grows its root filesystem on boot). Its
        // network stays open here, for debugging by hand.
        opts.root_disk_gib = Some(crate::workspace::real::NIXOS_ROOT_DISK_GIB);
    }
    if let Some(f) = &args.user_data {
        opts.user_data =
            std::fs::read(f).map_err(|e| anyhow::anyhow!("--user-data {}: {e}", f.display()))?;
    }
    let mut inst = QemuInstance::boot(&variant, &image, opts).await?;
    let code = match &args.run {
        Some(cmd) => {
            let out = inst
                .probe()
                .exec(cmd, std::time::Duration::from_secs(600))
                .await?;
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            out.status
        }
        None => interactive(&inst).await?,
    };
    inst.terminate().await?;
    eprintln!("logs kept in {}", artifacts.display());
    Ok(code)
}

/// A line-by-line root shell over the probe (like the NixOS test driver's
/// interactive mode); SSH is printed as the alternative.
async fn interactive(inst: &QemuInstance) -> anyhow::Result<i32> {
    use tokio::io::AsyncBufReadExt;
    if let Some(t) = inst.ssh() {
        eprintln!(
            "root shell on {} (probe channel). Type commands; Ctrl-D to stop the VM.\nSSH also works: ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1",
            inst.id(),
            t.identity.display(),
            t.port
        );
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        eprint!("{}# ", inst.id());
        let Some(line) = lines.next_line().await? else {
            return Ok(0);
        };
        if line.trim().is_empty() {
            continue;
        }
        match inst
            .probe()
            .exec(&line, std::time::Duration::from_secs(600))
            .await
        {
            Ok(out) => {
                print!("{}", out.stdout);
                eprint!("{}", out.stderr);
                if out.status != 0 {
                    eprintln!("[exit {}]", out.status);
                }
            }
            Err(e) => eprintln!("probe: {e}"),
        }
    }
}
