//! A loaded application: compiled components, routes, stores and outbound policy.
//!
//! Everything expensive happens once in [`App::load`]: the manifest is validated,
//! variables resolved, stores opened and every component compiled (or loaded from the
//! on-disk cache) into an `InstancePre`. [`App::handle`] then gives each request a fresh
//! `Store` and instance from the pooling allocator, so no guest memory outlives a request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hyper::body::Body;
use spin_osb_host_kv::{Store as KvStore, StoreManager};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::client_tls::TlsConfigs;
use crate::engine::{compile_cached, make_engine, start_epoch_ticker};
use crate::guest_output::{PrefixedOutput, Target};
use crate::kv_host::{KvContext, KvData, KvView};
use crate::manifest::{FileMount, LoadedManifest, Source};
use crate::outbound_http::OutboundHooks;
use crate::routes::{RouteMatch, Router};
use crate::runtime_config::{KeyValueStoreConfig, RuntimeConfig};
use crate::variables::{AppVariables, ComponentVariables, VariablesData};

/// How many instances may exist at once by default (pooling allocator slots). A request
/// that chains to another component uses two.
pub const DEFAULT_MAX_INSTANCES: u32 = 256;

/// Settings of `spin-osb up` that shape the app.
pub struct AppOptions {
    /// The `spin.toml` to run.
    pub manifest: PathBuf,
    /// Where the default SQLite store lives (`.spin` beside the manifest by default).
    pub state_dir: Option<PathBuf>,
    /// Spin runtime config (stores, client TLS).
    pub runtime_config: Option<PathBuf>,
    /// Hard limit for one request, guest time included.
    pub request_timeout: Duration,
    /// Instances that may run at once; a request that finds none free gets `503`.
    pub max_instances: u32,
}

/// One compiled component and the policy it runs under.
pub struct AppComponent {
    /// The component id from the manifest.
    pub id: String,
    /// Checked on every outbound request.
    pub allowed_hosts: AllowedHosts,
    pre: ProxyPre<InstanceState>,
    kv: KvContext,
    variables: ComponentVariables,
    environment: Vec<(String, String)>,
    mounts: Vec<(PathBuf, String)>,
}

/// A running application.
pub struct App {
    /// `[application] name`.
    pub name: String,
    engine: Engine,
    components: HashMap<String, AppComponent>,
    router: Router,
    tls: TlsConfigs,
    request_timeout: Duration,
    /// Copies of `files` globs, mounted read-only; removed when the app is dropped.
    _staging: tempfile::TempDir,
}

/// The data of one instance's `Store`.
pub struct InstanceState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KvContext,
    kv_open: usize,
    variables: ComponentVariables,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl App {
    /// Loads, validates and compiles the app described by `options`.
    pub async fn load(options: &AppOptions) -> Result<Arc<Self>> {
        let loaded = LoadedManifest::load(&options.manifest)?;
        let manifest = &loaded.manifest;
        let variables = AppVariables::resolve(manifest, |name| std::env::var(name).ok())?;
        variables.check_broker_password()?;
        let runtime_config = match &options.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| loaded.dir.join(".spin"));
        let stores = Arc::new(open_stores(&runtime_config, &state_dir).await?);
        let tls = TlsConfigs::new(&runtime_config.client_tls)?;
        let engine = make_engine(options.max_instances.max(2))?;
        let linker = make_linker(&engine)?;
        let staging = tempfile::Builder::new()
            .prefix("spin-osb-files-")
            .tempdir()?;

        let mut components = HashMap::new();
        for (id, spec) in &manifest.component {
            let at = |field: &str| format!("component '{id}': {field}");
            let Source::Local(source) = &spec.source else {
                unreachable!("manifest validation rejects remote sources")
            };
            let wasm_path = loaded.resolve(source);
            let component = compile_cached(&engine, &wasm_path).with_context(|| at("source"))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component '{id}' needs an import this host does not provide")
                })?;
            let pre = ProxyPre::new(pre)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component '{id}' is not an HTTP component (wasi:http/incoming-handler)"
                    )
                })?;
            let hosts: Vec<String> = spec
                .allowed_outbound_hosts
                .iter()
                .map(|entry| variables.render(entry))
                .collect::<Result<_>>()
                .with_context(|| at("allowed_outbound_hosts"))?;
            let allowed_hosts =
                AllowedHosts::parse(&hosts).with_context(|| at("allowed_outbound_hosts"))?;
            for label in &spec.key_value_stores {
                if !stores.contains(label) {
                    bail!("component '{id}': key_value_stores: no store '{label}' (define [key_value_store.{label}] in the runtime config)");
                }
            }
            let mounts = stage_files(
                &loaded,
                &spec.files,
                &spec.exclude_files,
                &staging.path().join(id),
            )
            .with_context(|| at("files"))?;
            let component_variables = variables
                .component_variables(&spec.variables)
                .with_context(|| at("variables"))?;
            components.insert(
                id.clone(),
                AppComponent {
                    id: id.clone(),
                    allowed_hosts,
                    pre,
                    kv: KvContext {
                        allowed: Arc::new(spec.key_value_stores.clone()),
                        stores: stores.clone(),
                    },
                    variables: component_variables,
                    environment: spec
                        .environment
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    mounts,
                },
            );
        }
        let router = Router::build(manifest.public_routes())?;
        start_epoch_ticker(&engine);
        Ok(Arc::new(Self {
            name: manifest.application.name.clone(),
            engine,
            components,
            router,
            tls,
            request_timeout: options.request_timeout,
            _staging: staging,
        }))
    }

    /// The component with this id.
    pub fn component(&self, id: &str) -> Option<&AppComponent> {
        self.components.get(id)
    }

    /// Public routes.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Client TLS settings.
    pub fn tls(&self) -> &TlsConfigs {
        &self.tls
    }

    /// The limit for one request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Runs the matched component on `request` in a fresh instance.
    ///
    /// Returns once the guest has set the response head; the body keeps streaming from
    /// the instance, which lives in its own task until the guest returns.
    pub async fn handle<B>(
        self: &Arc<Self>,
        route: RouteMatch,
        mut request: http::Request<B>,
        client_addr: SocketAddr,
    ) -> Result<http::Response<HyperOutgoingBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let component = self
            .components
            .get(&route.component_id)
            .ok_or_else(|| anyhow!("no component '{}'", route.component_id))?;
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| request.uri().authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "localhost".to_string());
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let full_url = format!("http://{host}{path_and_query}");
        for (name, value) in route.spin_headers(&full_url, client_addr) {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes())?,
                http::HeaderValue::from_str(&value)
                    .with_context(|| format!("header {name} is not valid"))?,
            );
        }
        if request.uri().authority().is_none() {
            *request.uri_mut() = format!("http://{host}{path_and_query}").parse()?;
        }

        let mut store = Store::new(&self.engine, self.instance_state(component)?);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        // The guest's whole run is bounded, not only the wait for its response head: a
        // guest that sends its head and then loops is interrupted at its next epoch yield
        // when the deadline passes (its response body then ends short).
        let deadline = self.request_timeout;
        let component_id = component.id.clone();
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            match tokio::time::timeout(deadline, run).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "component '{component_id}' ran past its deadline ({deadline:?}) and was interrupted"
                    );
                    Err(wasmtime::Error::msg(format!(
                        "interrupted after {deadline:?}"
                    )))
                }
            }
        });
        let abort = AbortOnDrop(Some(task.abort_handle()));
        match receiver.await {
            Ok(Ok(response)) => {
                abort.disarm();
                Ok(response)
            }
            Ok(Err(code)) => Err(anyhow!(
                "component '{}' failed the request: {code:?}",
                component.id
            )),
            Err(_) => {
                let error = match task.await {
                    Ok(Ok(())) => anyhow!("guest returned without setting a response"),
                    Ok(Err(trap)) => anyhow::Error::from(trap),
                    Err(join) => anyhow!("guest task failed: {join}"),
                };
                Err(error.context(format!("component '{}' trapped", component.id)))
            }
        }
    }

    fn instance_state(self: &Arc<Self>, component: &AppComponent) -> Result<InstanceState> {
        let mut wasi = WasiCtx::builder();
        wasi.stdout(PrefixedOutput::new(&component.id, Target::Stdout))
            .stderr(PrefixedOutput::new(&component.id, Target::Stderr))
            .envs(&component.environment)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // Mounted files are read-only and local (the compiled catalog: a few kB per
            // request); reading them on the request's thread instead of handing every
            // open/read/stat to Tokio's blocking pool saves two thread wake-ups each.
            .allow_blocking_current_thread(true);
        for (host_path, guest_path) in &component.mounts {
            wasi.preopened_dir(host_path, guest_path, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot mount {} at {guest_path}", host_path.display()))?;
        }
        Ok(InstanceState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                component_id: component.id.clone(),
                app: self.clone(),
            },
            kv: component.kv.clone(),
            kv_open: 0,
            variables: component.variables.clone(),
        })
    }
}

/// Aborts the guest task if the caller gives up (timeout, client gone) before a response.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

fn make_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    use crate::bindings::{fermyon::spin, wasi::keyvalue};
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    fn kv(state: &mut InstanceState) -> KvView<'_> {
        KvView::new(&mut state.table, &state.kv, &mut state.kv_open)
    }
    spin::key_value::add_to_linker::<_, KvData>(&mut linker, kv)?;
    keyvalue::store::add_to_linker::<_, KvData>(&mut linker, kv)?;
    keyvalue::atomics::add_to_linker::<_, KvData>(&mut linker, kv)?;
    keyvalue::batch::add_to_linker::<_, KvData>(&mut linker, kv)?;
    spin::variables::add_to_linker::<_, VariablesData>(&mut linker, |state| &state.variables)?;
    Ok(linker)
}

async fn open_stores(config: &RuntimeConfig, state_dir: &Path) -> Result<StoreManager> {
    let mut stores = StoreManager::default();
    let default_path = state_dir.join("sqlite_key_value.db");
    if !config.key_value_store.contains_key("default") {
        stores.insert("default", open_sqlite(&default_path, "default")?);
    }
    for (label, store) in &config.key_value_store {
        let opened: Arc<dyn KvStore> = match store {
            KeyValueStoreConfig::Spin { path } => {
                open_sqlite(path.as_deref().unwrap_or(&default_path), label)?
            }
            KeyValueStoreConfig::Redis { url } => Arc::new(
                spin_osb_host_kv::redis::RedisStore::connect(url)
                    .await
                    .with_context(|| format!("key_value_store.{label}: cannot connect to Redis"))?,
            ),
        };
        stores.insert(label.clone(), opened);
    }
    Ok(stores)
}

fn open_sqlite(path: &Path, label: &str) -> Result<Arc<dyn KvStore>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = spin_osb_host_kv::sqlite::SqliteStore::open(path, label)
        .with_context(|| format!("key_value_store.{label}: cannot open {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Prepares a component's `files`: glob matches are copied under `staging` (mounted at
/// `/`); directory placements are mounted directly. Everything is read-only to the guest.
fn stage_files(
    loaded: &LoadedManifest,
    files: &[FileMount],
    exclude: &[String],
    staging: &Path,
) -> Result<Vec<(PathBuf, String)>> {
    let excluded: Vec<glob::Pattern> = exclude
        .iter()
        .map(|p| {
            glob::Pattern::new(p).with_context(|| format!("invalid exclude_files pattern {p:?}"))
        })
        .collect::<Result<_>>()?;
    let mut mounts = Vec::new();
    let mut staged_any = false;
    for mount in files {
        match mount {
            FileMount::Glob(pattern) => {
                let full = loaded.dir.join(pattern);
                let full = full
                    .to_str()
                    .ok_or_else(|| anyhow!("non-UTF-8 path {pattern:?}"))?;
                let mut matched = 0;
                for entry in
                    glob::glob(full).with_context(|| format!("invalid glob {pattern:?}"))?
                {
                    let path = entry?;
                    let relative = path
                        .strip_prefix(&loaded.dir)
                        .unwrap_or(&path)
                        .to_path_buf();
                    if !path.is_file() || excluded.iter().any(|p| p.matches_path(&relative)) {
                        continue;
                    }
                    let target = staging.join(&relative);
                    std::fs::create_dir_all(target.parent().expect("joined path has a parent"))?;
                    std::fs::copy(&path, &target)
                        .with_context(|| format!("cannot copy {}", path.display()))?;
                    matched += 1;
                    staged_any = true;
                }
                if matched == 0 {
                    tracing::warn!("files pattern {pattern:?} matches no file");
                }
            }
            FileMount::Placement {
                source,
                destination,
            } => {
                let path = loaded.resolve(source);
                if path.is_dir() {
                    mounts.push((path, destination.clone()));
                } else if path.is_file() {
                    let target = staging.join(destination.trim_start_matches('/'));
                    std::fs::create_dir_all(target.parent().expect("joined path has a parent"))?;
                    std::fs::copy(&path, &target)
                        .with_context(|| format!("cannot copy {}", path.display()))?;
                    staged_any = true;
                } else {
                    bail!("source {source:?} does not exist ({})", path.display());
                }
            }
        }
    }
    if staged_any {
        // The root mount goes first so more specific directory mounts take precedence.
        mounts.insert(0, (staging.to_path_buf(), "/".to_string()));
    }
    Ok(mounts)
}
