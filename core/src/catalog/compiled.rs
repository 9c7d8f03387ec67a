//! The compiled catalog: what requests read, produced once at build time from the YAML.
//!
//! A component lives for one request, so whatever it derives from the catalog it derives
//! again on the next one. Parsing and validating the YAML, compiling every JSON Schema and
//! parsing every template cost ~20 ms per request; all of that happens once, when the app
//! is built (`spin-osb-catalog compile`, run by `spin build`), and produces a directory:
//!
//! ```text
//! manifest.json        {"format": 1, "generation": "…", "etag": "\"…\"", "catalog_bytes": N, …}
//! catalog.json         the exact `GET /v2/catalog` body (its ETag is in the manifest)
//! index.json           service ids and names, plan ids → service ids (only for 400 messages)
//! plans/<key>.json     one file per plan: its effective settings, schemas and backend
//! ```
//!
//! A request reads `manifest.json` plus the one file it needs: the catalog endpoint the
//! body, every other endpoint its plan's file (`<key>` = the first 128 bits of the SHA-256
//! of the plan id, hex). Nothing is validated again: the compiler only writes catalogs that
//! passed `spin-osb catalog check`, and the reader only checks that what it reads belongs to
//! that compilation (format version, generation, sizes). Anything else — a missing or
//! truncated file, a file of another compilation or format — is [`Untrusted`]: the broker
//! answers 500 naming the problem and never serves or acts on data it cannot vouch for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::BindingLifetime;
use super::PlanBackend;

/// The layout version of the compiled directory. A component reads exactly this version;
/// bump it whenever the meaning or shape of any compiled file changes.
pub const FORMAT: u32 = 1;

/// The compiled catalog's manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`] of the compiler that wrote the directory.
    pub format: u32,
    /// A digest of everything compiled; every plan file repeats it, so a directory mixing
    /// two compilations is detected instead of served.
    pub generation: String,
    /// The strong ETag of `catalog.json`.
    pub etag: String,
    /// The length of `catalog.json`, to detect a truncated or replaced body.
    pub catalog_bytes: usize,
    /// How many services and plans were compiled (for humans and checks).
    pub services: usize,
    /// See `services`.
    pub plans: usize,
    /// The catalog files compiled, by name, for humans reading the directory.
    pub sources: Vec<String>,
}

/// The `GET /v2/catalog` answer as compiled: the body bytes and their ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogDocument {
    /// The JSON body, exactly as platforms receive it.
    pub body: Vec<u8>,
    /// Its strong ETag (quoted).
    pub etag: String,
}

/// One plan as requests use it: the effective values of everything a plan inherits from its
/// service, its parameter schemas, and its backend's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledPlan {
    /// The service's id.
    pub service_id: String,
    /// The service's name, for messages and instance metadata.
    pub service_name: String,
    /// The plan's id.
    pub plan_id: String,
    /// The plan's name, for messages and instance metadata.
    pub plan_name: String,
    /// Effective `bindable` (plan, else service).
    pub bindable: bool,
    /// Effective `plan_updateable` (plan, else service, else false).
    pub plan_updateable: bool,
    /// Service `instances_retrievable`.
    pub instances_retrievable: bool,
    /// Service `bindings_retrievable`.
    pub bindings_retrievable: bool,
    /// Service `allow_context_updates`.
    pub allow_context_updates: bool,
    /// Plan `binding_rotatable`.
    pub binding_rotatable: bool,
    /// Plan `maintenance_info.version`.
    pub maintenance_version: Option<String>,
    /// Seconds after which an unfinished operation fails: the plan's
    /// `maximum_polling_duration`, else the backend's default.
    pub maximum_polling_duration: Option<u64>,
    /// The plan's `binding_lifetime`.
    pub binding_lifetime: Option<BindingLifetime>,
    /// The plan's parameter schemas.
    pub schemas: CompiledSchemas,
    /// How the broker fulfils the plan.
    pub backend: PlanBackend,
    /// The quota limits its provisions check (the broker's, the service's, the plan's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<crate::quota::Limit>,
}

/// A plan's parameter schemas, already checked against the OSB rules and their
/// meta-schemas. A request compiles one only when it has parameters to check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledSchemas {
    /// `schemas.service_instance.create.parameters`.
    pub instance_create: Option<CompiledSchema>,
    /// `schemas.service_instance.update.parameters`.
    pub instance_update: Option<CompiledSchema>,
    /// `schemas.service_binding.create.parameters`.
    pub binding_create: Option<CompiledSchema>,
}

/// One parameters schema and what it says about empty parameters, which is what most
/// requests send: answering those needs no schema compiler at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompiledSchema {
    /// The schema as written.
    pub schema: Value,
    /// The violations of `{}` (empty when `{}` is valid), rendered as the 400 names them.
    pub empty_violations: Vec<String>,
}

/// A plan file: the plan and the compilation it belongs to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    generation: String,
    plan: CompiledPlan,
}

/// `index.json`: which ids exist, so that a request for an unknown plan learns whether its
/// service is unknown too.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    generation: String,
    /// Service id → name.
    services: BTreeMap<String, String>,
    /// Plan id → service id.
    plans: BTreeMap<String, String>,
}

/// A compiled catalog that cannot be trusted; the message names the file and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the compiled catalog cannot be trusted: {0}")]
pub struct Untrusted(pub String);

/// Why no plan was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No service has this id.
    #[error("service_id {0:?} is not in the catalog")]
    UnknownService(String),
    /// The service exists, but this plan is not one of its plans.
    #[error("plan_id {plan_id:?} is not a plan of service {service_id:?}")]
    UnknownPlan {
        /// The service asked for.
        service_id: String,
        /// The plan asked for.
        plan_id: String,
    },
    /// The catalog itself is broken.
    #[error(transparent)]
    Untrusted(#[from] Untrusted),
}

/// What the broker needs from a catalog. Implemented by [`CompiledCatalog`] (what
/// components read) and by the YAML [`super::Catalog`] (which compiles itself in memory).
pub trait CatalogLookup {
    /// The `GET /v2/catalog` body and ETag.
    fn document(&self) -> Result<CatalogDocument, Untrusted>;
    /// The plan `plan_id` of service `service_id`; a plan of another service is unknown.
    fn plan(&self, service_id: &str, plan_id: &str) -> Result<Arc<CompiledPlan>, LookupError>;
}

/// Every plan of `catalog`, in catalog order: for the operator's fleet-wide views (orphans,
/// quotas), never for a request about one plan.
pub fn all_plans(catalog: &dyn CatalogLookup) -> Result<Vec<Arc<CompiledPlan>>, Untrusted> {
    let document = catalog.document()?;
    let document: Value = serde_json::from_slice(&document.body)
        .map_err(|e| Untrusted(format!("the compiled catalog is unreadable: {e}")))?;
    let mut plans = Vec::new();
    for service in document["services"].as_array().into_iter().flatten() {
        for plan in service["plans"].as_array().into_iter().flatten() {
            if let (Some(service_id), Some(plan_id)) = (service["id"].as_str(), plan["id"].as_str())
            {
                match catalog.plan(service_id, plan_id) {
                    Ok(plan) => plans.push(plan),
                    Err(LookupError::Untrusted(untrusted)) => return Err(untrusted),
                    Err(_) => {}
                }
            }
        }
    }
    Ok(plans)
}

/// Where compiled files come from.
#[derive(Debug, Clone)]
enum Files {
    /// A directory (a component's mounted files).
    Dir(PathBuf),
    /// File names → contents (the compiler's output before it is written; tests).
    Memory(BTreeMap<String, Vec<u8>>),
}

/// A compiled catalog: a directory written by the compiler, or the same files in memory.
///
/// Each file is read and decoded at most once per value: a component makes one per request
/// and looks its plan up several times (admission, the request, the backend step), and on
/// this path a plan file's read and decoding cost as much as the rest of the step.
#[derive(Debug, Clone)]
pub struct CompiledCatalog {
    files: Files,
    read: Memo,
}

/// What a [`CompiledCatalog`] has already read: its manifest and the plans looked up.
#[derive(Debug, Default)]
struct Memo {
    manifest: OnceLock<Manifest>,
    plans: Mutex<BTreeMap<String, Arc<CompiledPlan>>>,
}

impl Clone for Memo {
    /// A copy starts empty: it reads for itself.
    fn clone(&self) -> Self {
        Memo::default()
    }
}

/// The file holding a plan: `plans/` + the first 128 bits of SHA-256(plan id), hex. Plan
/// ids are arbitrary strings; hashing gives every one a short, safe file name.
pub fn plan_file_name(plan_id: &str) -> String {
    let digest = Sha256::digest(plan_id.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("plans/{hex}.json")
}

/// A strong ETag (quoted) for a body: the first 128 bits of its SHA-256.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

impl CompiledCatalog {
    /// The compiled catalog in `dir`; nothing is read until a request needs it.
    pub fn open(dir: impl Into<PathBuf>) -> CompiledCatalog {
        CompiledCatalog {
            files: Files::Dir(dir.into()),
            read: Memo::default(),
        }
    }

    /// Compiles already-validated plans and the catalog body into the compiled files.
    pub(crate) fn build(body: String, plans: Vec<CompiledPlan>, sources: Vec<String>) -> Self {
        let etag = etag_of(body.as_bytes());
        let mut index = Index::default();
        for plan in &plans {
            index
                .services
                .insert(plan.service_id.clone(), plan.service_name.clone());
            index
                .plans
                .insert(plan.plan_id.clone(), plan.service_id.clone());
        }
        // The generation digests every plan and the body, so it changes whenever anything a
        // request could read changes.
        let mut hasher = Sha256::new();
        hasher.update(FORMAT.to_le_bytes());
        hasher.update(body.as_bytes());
        let plan_json: Vec<(String, String)> = plans
            .into_iter()
            .map(|plan| {
                let text = serde_json::to_string(&plan).unwrap_or_default();
                hasher.update(plan.plan_id.as_bytes());
                hasher.update([0]);
                hasher.update(text.as_bytes());
                (plan.plan_id, text)
            })
            .collect();
        let generation: String = hasher.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        index.generation = generation.clone();

        let mut files = BTreeMap::new();
        for (plan_id, text) in plan_json {
            // `{"generation": …, "plan": <text>}` without re-serialising the plan.
            let file = format!(
                "{{\"generation\":{},\"plan\":{text}}}",
                Value::String(generation.clone())
            );
            files.insert(plan_file_name(&plan_id), file.into_bytes());
        }
        let manifest = Manifest {
            format: FORMAT,
            generation,
            etag,
            catalog_bytes: body.len(),
            services: index.services.len(),
            plans: index.plans.len(),
            sources,
        };
        files.insert(
            "index.json".into(),
            serde_json::to_vec(&index).unwrap_or_default(),
        );
        files.insert(
            "manifest.json".into(),
            serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        );
        files.insert("catalog.json".into(), body.into_bytes());
        CompiledCatalog {
            files: Files::Memory(files),
            read: Memo::default(),
        }
    }

    /// The compiled files in memory (from [`CompiledCatalog::from_files`]) or on disk.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Self {
        CompiledCatalog {
            files: Files::Memory(files),
            read: Memo::default(),
        }
    }

    /// The files of an in-memory compilation, by relative path.
    pub fn files(&self) -> Option<&BTreeMap<String, Vec<u8>>> {
        match &self.files {
            Files::Memory(files) => Some(files),
            Files::Dir(_) => None,
        }
    }

    /// Writes an in-memory compilation to `dir`, replacing what was there in one rename, so
    /// a running broker never sees half of one compilation and half of another, and no plan
    /// file of an earlier catalog survives.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        let Files::Memory(files) = &self.files else {
            return Err(std::io::Error::other(
                "only an in-memory compilation can be written",
            ));
        };
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "catalog".into());
        let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        for (path, contents) in files {
            let target = staging.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, contents)?;
        }
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old)?;
        }
        std::fs::rename(&staging, dir)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// The manifest, checked against this reader's format.
    pub fn manifest(&self) -> Result<Manifest, Untrusted> {
        if let Some(manifest) = self.read.manifest.get() {
            return Ok(manifest.clone());
        }
        let manifest = self.read_manifest()?;
        Ok(self.read.manifest.get_or_init(|| manifest).clone())
    }

    fn read_manifest(&self) -> Result<Manifest, Untrusted> {
        let bytes = self.read("manifest.json")?.ok_or_else(|| {
            Untrusted(format!(
                "{} is missing: build the app (`spin build`, or `spin-osb-catalog compile CATALOG_DIR --out DIR`)",
                self.label("manifest.json")
            ))
        })?;
        // The format first, alone: a newer manifest may have fields this reader lacks.
        let format = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("format").and_then(Value::as_u64));
        if format != Some(u64::from(FORMAT)) {
            return Err(Untrusted(format!(
                "{} has format {}, this component reads format {FORMAT}: rebuild the app so the catalog and the components come from the same build",
                self.label("manifest.json"),
                format.map(|f| f.to_string()).unwrap_or_else(|| "(none)".into())
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Untrusted(format!(
                "{} is unreadable: {e}",
                self.label("manifest.json")
            ))
        })
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, Untrusted> {
        match &self.files {
            Files::Memory(files) => Ok(files.get(name).cloned()),
            Files::Dir(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Untrusted(format!("cannot read {}: {e}", self.label(name)))),
            },
        }
    }

    fn label(&self, name: &str) -> String {
        match &self.files {
            Files::Dir(dir) => dir.join(name).display().to_string(),
            Files::Memory(_) => name.to_owned(),
        }
    }

    fn index(&self, manifest: &Manifest) -> Result<Index, Untrusted> {
        let bytes = self
            .read("index.json")?
            .ok_or_else(|| Untrusted(format!("{} is missing", self.label("index.json"))))?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Untrusted(format!("{} is unreadable: {e}", self.label("index.json"))))?;
        if index.generation != manifest.generation {
            return Err(self.mixed("index.json"));
        }
        Ok(index)
    }

    fn mixed(&self, name: &str) -> Untrusted {
        Untrusted(format!(
            "{} belongs to another compilation than {}: rebuild the app",
            self.label(name),
            self.label("manifest.json")
        ))
    }
}

impl CatalogLookup for CompiledCatalog {
    fn document(&self) -> Result<CatalogDocument, Untrusted> {
        let manifest = self.manifest()?;
        let body = self
            .read("catalog.json")?
            .ok_or_else(|| Untrusted(format!("{} is missing", self.label("catalog.json"))))?;
        if body.len() != manifest.catalog_bytes {
            return Err(Untrusted(format!(
                "{} has {} bytes, its manifest says {}: rebuild the app",
                self.label("catalog.json"),
                body.len(),
                manifest.catalog_bytes
            )));
        }
        Ok(CatalogDocument {
            body,
            etag: manifest.etag,
        })
    }

    fn plan(&self, service_id: &str, plan_id: &str) -> Result<Arc<CompiledPlan>, LookupError> {
        let memo = |plans: &BTreeMap<String, Arc<CompiledPlan>>| {
            plans
                .get(plan_id)
                .filter(|plan| plan.service_id == service_id)
                .cloned()
        };
        if let Some(plan) = memo(&self.read.plans.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(plan);
        }
        let plan = Arc::new(self.read_plan(service_id, plan_id)?);
        self.read
            .plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plan_id.to_owned(), plan.clone());
        Ok(plan)
    }
}

impl CompiledCatalog {
    fn read_plan(&self, service_id: &str, plan_id: &str) -> Result<CompiledPlan, LookupError> {
        let manifest = self.manifest()?;
        let name = plan_file_name(plan_id);
        let found = match self.read(&name)? {
            Some(bytes) => {
                let file: PlanFile = serde_json::from_slice(&bytes)
                    .map_err(|e| Untrusted(format!("{} is unreadable: {e}", self.label(&name))))?;
                if file.generation != manifest.generation {
                    return Err(self.mixed(&name).into());
                }
                if file.plan.plan_id != plan_id {
                    return Err(Untrusted(format!(
                        "{} holds plan {:?}, not {plan_id:?}",
                        self.label(&name),
                        file.plan.plan_id
                    ))
                    .into());
                }
                Some(file.plan)
            }
            None => None,
        };
        match found {
            Some(plan) if plan.service_id == service_id => Ok(plan),
            other => {
                let index = self.index(&manifest)?;
                if other.is_none() && index.plans.contains_key(plan_id) {
                    return Err(Untrusted(format!(
                        "{} is missing, yet the catalog has plan {plan_id:?}: rebuild the app",
                        self.label(&name)
                    ))
                    .into());
                }
                if index.services.contains_key(service_id) {
                    Err(LookupError::UnknownPlan {
                        service_id: service_id.to_owned(),
                        plan_id: plan_id.to_owned(),
                    })
                } else {
                    Err(LookupError::UnknownService(service_id.to_owned()))
                }
            }
        }
    }
}

impl CompiledSchema {
    /// The schema with what it says about `{}`, computed by `check_empty` (which the
    /// compiler backs with the real validator).
    pub fn new(schema: Value, empty_violations: Vec<String>) -> Self {
        CompiledSchema {
            schema,
            empty_violations,
        }
    }
}
