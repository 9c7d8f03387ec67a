//! `spin-osb-catalog`: the build step between `catalog/*.yaml` and the components.
//!
//! `compile` runs exactly the checks of `spin-osb catalog check` (same messages), then
//! writes the compiled catalog (see `spin_osb_core::catalog::CompiledCatalog`) that every
//! component mounts at `/catalog`. `spin.toml` runs it as part of `spin build`, so a catalog
//! edit followed by a build is served, and a catalog error stops the build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "spin-osb-catalog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a catalog directory exactly as `spin-osb catalog check` does.
    Check {
        /// The directory holding the catalog's *.yaml files.
        #[arg(default_value = "catalog")]
        dir: PathBuf,
    },
    /// Validate a catalog directory and write its compiled form.
    Compile {
        /// The directory holding the catalog's *.yaml files.
        #[arg(default_value = "catalog")]
        dir: PathBuf,
        /// Where to write the compiled catalog (replaced as a whole).
        #[arg(long, short)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check { dir } => check(&dir).map(|_| ()),
        Command::Compile { dir, out } => compile(&dir, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &Path) -> Result<spin_osb_core::catalog::Catalog> {
    match spin_osb_core::catalog::check_dir(dir) {
        Ok((catalog, summary)) => {
            println!("{summary}");
            Ok(catalog)
        }
        Err((errors, summary)) => {
            eprintln!("{errors}");
            anyhow::bail!(summary)
        }
    }
}

fn compile(dir: &Path, out: &Path) -> Result<()> {
    let catalog = check(dir)?;
    catalog
        .compiled()
        .write_dir(out)
        .with_context(|| format!("cannot write the compiled catalog to {}", out.display()))?;
    let manifest = catalog.compiled().manifest()?;
    println!(
        "{}: compiled into {} (generation {})",
        dir.display(),
        out.display(),
        manifest.generation
    );
    Ok(())
}
