//! `spin-osb build`: runs each component's `[component.<id>.build]` commands, like `spin build`.

use anyhow::{bail, Context, Result};

use crate::manifest::LoadedManifest;

/// Runs every build command of the manifest, in manifest order, stopping at the first failure.
pub fn build(loaded: &LoadedManifest) -> Result<()> {
    let mut built = 0;
    for (id, component) in &loaded.manifest.component {
        let Some(build) = &component.build else {
            continue;
        };
        let workdir = match &build.workdir {
            Some(dir) => loaded.resolve(dir),
            None => loaded.dir.clone(),
        };
        for command in build.command.iter() {
            println!("Building component {id} with `{command}`");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .status()
                .with_context(|| {
                    format!(
                        "cannot run the build command of component '{id}' in {}",
                        workdir.display()
                    )
                })?;
            if !status.success() {
                bail!("build command for component '{id}' failed ({status}): {command}");
            }
        }
        built += 1;
    }
    println!("Finished building {built} component(s)");
    Ok(())
}
