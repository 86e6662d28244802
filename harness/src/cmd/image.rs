//! `harness image`: build or locate a guest image.
//! `harness image fixture --arch x86_64|aarch64` builds (or finds cached)
//! the Debian fixture guest and prints where its files are.

use crate::variant::Arch;

/// Arguments of `harness image`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Build the Debian fixture guest (a test double, not NixOS), cached under target/.
    Fixture {
        /// Guest architecture.
        #[arg(long, value_parser = ["x86_64", "aarch64"])]
        arch: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    match args.what {
        What::Fixture { arch, json } => {
            let arch: Arch = arch.parse()?;
            let root = crate::repo::root()?;
            let img =
                tokio::task::spawn_blocking(move || crate::image::fixture::build(&root, arch))
                    .await??;
            let crate::image::BootMethod::Direct {
                kernel,
                initrd,
                append,
            } = &img.boot
            else {
                anyhow::bail!("fixture image is not a direct-kernel image");
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
    }
}
