//! `harness image`: build or locate a guest image.
//! `harness image contract --arch x86_64|aarch64` builds (or finds cached)
//! the contract guest and prints where its files are.
//! `harness image nixos --arch …` builds the NixOS test image with nix (or
//! takes HARNESS_IMAGE_<ARCH>); `harness image path FILE --arch …` checks a
//! user-supplied image and detects its format.

use crate::template::variant::Arch;

/// Arguments of `harness image`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Build the contract guest (a double of the NixOS AMI, not NixOS), cached under target/.
    Contract {
        /// Guest architecture.
        #[arg(long, value_parser = ["x86_64", "aarch64"])]
        arch: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the NixOS test image (`nix build nixos-vm#packages.<system>.ec2-image`),
    /// or use HARNESS_IMAGE_<ARCH>; prints the image file and its format.
    Nixos {
        /// Guest architecture.
        #[arg(long, value_parser = ["x86_64", "aarch64"])]
        arch: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that nixos-vm/ (and nixos-vm/ec2/) pin the NixOS release the
    /// template boots (templates/variables.tf nixos_release); prints it.
    NixosRelease,
    /// Evaluation only: the bootstrap system seeded into the NixOS test image
    /// must be the one the guest evaluates from the user-data (same drvPath),
    /// for every seeded agent user; needs nix and nixpkgs (the nightly).
    NixosSeedCheck {
        /// Guest architecture.
        #[arg(long, value_parser = ["x86_64", "aarch64"])]
        arch: String,
        /// The flake (default: <repo>/nixos-vm); extra nix arguments come
        /// from HARNESS_NIX_ARGS.
        #[arg(long)]
        flake: Option<String>,
    },
    /// Check a user-supplied disk image and detect its format (qcow2, vpc, raw).
    Path {
        /// The image file.
        path: std::path::PathBuf,
        /// Guest architecture.
        #[arg(long, value_parser = ["x86_64", "aarch64"])]
        arch: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_firmware_image(img: &crate::image::BootImage, json: bool) -> anyhow::Result<()> {
    if json {
        let v = serde_json::json!({
            "arch": img.arch.as_str(),
            "kind": img.kind.as_str(),
            "base": img.base,
            "base_format": img.base_format,
            "description": img.description,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", img.description);
        println!("base:   {} ({})", img.base.display(), img.base_format);
    }
    Ok(())
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    match args.what {
        What::Contract { arch, json } => {
            let arch: Arch = arch.parse()?;
            let root = crate::repo::root()?;
            let img =
                tokio::task::spawn_blocking(move || crate::image::contract::build(&root, arch))
                    .await??;
            let crate::image::BootMethod::Direct {
                kernel,
                initrd,
                append,
            } = &img.boot
            else {
                anyhow::bail!("the contract image is not a direct-kernel image");
            };
            if json {
                let v = serde_json::json!({
                    "arch": img.arch.as_str(),
                    "kind": img.kind.as_str(),
                    "kernel": kernel,
                    "initrd": initrd,
                    "append": append,
                    "base": img.base,
                    "base_format": img.base_format,
                    "description": img.description,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", img.description);
                println!("kernel: {}", kernel.display());
                println!("initrd: {}", initrd.display());
                println!("append: {append}");
                println!("base:   {} ({})", img.base.display(), img.base_format);
            }
            Ok(0)
        }
        What::Nixos { arch, json } => {
            let arch: Arch = arch.parse()?;
            let root = crate::repo::root()?;
            let img = tokio::task::spawn_blocking(move || crate::image::nixos::image(&root, arch))
                .await??;
            print_firmware_image(&img, json)?;
            Ok(0)
        }
        What::NixosRelease => {
            let root = crate::repo::root()?;
            println!("{}", crate::image::nixos::release::check(&root)?);
            Ok(0)
        }
        What::NixosSeedCheck { arch, flake } => {
            let arch: Arch = arch.parse()?;
            let root = crate::repo::root()?;
            let flake = flake.unwrap_or_else(|| root.join("nixos-vm").display().to_string());
            let extra = crate::image::nixos::extra_args_from_env();
            let done = crate::image::nixos::seed_check::run(&root, &flake, arch, &extra).await?;
            for (user, p) in done {
                println!("seed check {arch} {user}: seeded = guest = {}", p.seeded);
            }
            Ok(0)
        }
        What::Path { path, arch, json } => {
            let arch: Arch = arch.parse()?;
            let img = crate::image::path::image(&path, arch, crate::image::ImageKind::Path)?;
            print_firmware_image(&img, json)?;
            Ok(0)
        }
    }
}
