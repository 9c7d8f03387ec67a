//! `test-probe`: one guest component that serves every end-to-end test app of
//! the `spin-osb` host. The operation is chosen by the `op` query parameter
//! (default: `echo`), so the same wasm can be mounted on any route.
//!
//! Every response is JSON (`content-type: application/json`). Successful
//! operations answer 200; an operation that fails in the guest answers 500 with
//! `{"op": ..., "error": "<kind>", "detail": "<debug text>"}`; a malformed
//! probe request (missing parameter, unknown op) answers 400.
//!
//! Ops (all parameters are query parameters, percent-decoded; `iface` is
//! `spin` (fermyon:spin/key-value@2.0.0, default) or `wasi`
//! (wasi:keyvalue@0.2.0-draft2); `store` defaults to `default`):
//!
//! | op | parameters | answer |
//! |----|------------|--------|
//! | `echo` | – | `{name, method, uri, path, query, headers{}, body_len, body}` |
//! | `status` | `code` | echo, with the given status code |
//! | `kv-get` | `iface, store, key` | `{value: string\|null}` |
//! | `kv-set` | `iface, store, key`, value = `value` param or request body | `{ok}` |
//! | `kv-delete` | `iface, store, key` | `{ok}` |
//! | `kv-exists` | `iface, store, key` | `{exists}` |
//! | `kv-keys` | `iface, store` | `{keys: [sorted]}` |
//! | `kv-increment` | `store, key, delta` (wasi only) | `{value: i64}` |
//! | `kv-cas` | `store, key, expect` or `expect_absent=1`, new value = `value`/body (wasi) | `{swapped, reason?, current}` |
//! | `kv-cas-conflict` | `store, key`, `value` (wasi): cas.new, then a plain `set` of the key to `interloper`, then swap | `{swapped, reason?}` |
//! | `kv-cas-incr` | `store, key`, optional `hold_ms` (sleep between read and swap), `max_attempts` | `{value, attempts}` |
//! | `kv-create` | `store, key`, value = `value`/body (wasi CAS, create if absent) | `{created, existing?}` |
//! | `kv-batch-get` | `store, keys=a,b,c` (wasi) | `{values: {k: string\|null}}` |
//! | `kv-batch-set` | `store`, body = JSON object `{k: "v"}` (wasi) | `{ok}` |
//! | `kv-batch-delete` | `store, keys=a,b` (wasi) | `{ok}` |
//! | `outbound` | `url`, optional `method` (GET), body forwarded | `{ok:true,status,body,json?}` or `{ok:false,error,detail}` |
//! | `chain` | `target` (component id), `path` (default `/`) → GET `http://<target>.spin.internal<path>` | as `outbound` |
//! | `var` | `name` | `{name, value}` / error `undefined`, `invalid-name`, ... |
//! | `file` | `path` | `{path, content}` / error `not-found`, ... |
//! | `file-write` | `path`, body | `{written:true}` / error |
//! | `ls` | `path` | `{entries: [sorted names]}` |
//! | `env` | optional `name` | `{name, value\|null}` or `{env: {..}}` |
//! | `sleep` | `ms` | `{slept_ms}` after sleeping |
//! | `log` | `msg` | prints `msg` to stdout and `msg` + ` (stderr)` to stderr |
//! | `panic` | – | traps |
//!
//! `outbound`/`chain` error kinds: `denied` (HttpRequestDenied), `tls-certificate-error`,
//! `tls-protocol-error`, `tls-alert-received`, `connection-refused`, `dns-error`,
//! `connection-timeout`, `destination-not-found`, `internal-error`, otherwise
//! the kebab-cased variant name; `detail` is the Debug text.

use serde_json::{json, Map, Value};
use spin_sdk::http::{ErrorCode, IntoResponse, Method, Request, Response, SendError};
use spin_sdk::http_component;
use spin_sdk::key_value;
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wkv};

/// Cap on the body copied into the echo answer.
const ECHO_BODY_MAX: usize = 64 * 1024;

struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Self {
        Params(
            query
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                })
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("1") | Some("true") | Some("yes"))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error answered to the test client.
struct ProbeError {
    status: u16,
    kind: String,
    detail: String,
}

impl ProbeError {
    fn bad_request(detail: impl Into<String>) -> Self {
        ProbeError {
            status: 400,
            kind: "bad-probe-request".into(),
            detail: detail.into(),
        }
    }
    fn failed(kind: impl Into<String>, detail: impl Into<String>) -> Self {
        ProbeError {
            status: 500,
            kind: kind.into(),
            detail: detail.into(),
        }
    }
}

impl From<key_value::Error> for ProbeError {
    fn from(e: key_value::Error) -> Self {
        let kind = match &e {
            key_value::Error::StoreTableFull => "store-table-full",
            key_value::Error::NoSuchStore => "no-such-store",
            key_value::Error::AccessDenied => "access-denied",
            key_value::Error::Other(_) => "other",
        };
        ProbeError::failed(kind, format!("{e:?}"))
    }
}

impl From<wkv::Error> for ProbeError {
    fn from(e: wkv::Error) -> Self {
        let kind = match &e {
            wkv::Error::NoSuchStore => "no-such-store",
            wkv::Error::AccessDenied => "access-denied",
            wkv::Error::Other(_) => "other",
        };
        ProbeError::failed(kind, format!("{e:?}"))
    }
}

type ProbeResult = Result<Value, ProbeError>;

fn json_response(status: u16, value: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
        .build()
}

fn text(bytes: Option<Vec<u8>>) -> Value {
    match bytes {
        Some(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        None => Value::Null,
    }
}

struct Ctx {
    req: Request,
    params: Params,
}

impl Ctx {
    fn param(&self, name: &str) -> Result<&str, ProbeError> {
        self.params
            .get(name)
            .ok_or_else(|| ProbeError::bad_request(format!("missing query parameter `{name}`")))
    }

    fn store_label(&self) -> &str {
        self.params.get("store").unwrap_or("default")
    }

    fn iface(&self) -> Result<Iface, ProbeError> {
        match self.params.get("iface").unwrap_or("spin") {
            "spin" => Ok(Iface::Spin),
            "wasi" => Ok(Iface::Wasi),
            other => Err(ProbeError::bad_request(format!("unknown iface `{other}`"))),
        }
    }

    /// The value to store: `value` query parameter, else the request body.
    fn value(&self) -> Vec<u8> {
        match self.params.get("value") {
            Some(v) => v.as_bytes().to_vec(),
            None => self.req.body().to_vec(),
        }
    }

    fn wasi_bucket(&self) -> Result<wkv::Bucket, ProbeError> {
        Ok(wkv::open(self.store_label())?)
    }
}

enum Iface {
    Spin,
    Wasi,
}

#[http_component]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let params = Params::parse(req.query());
    let op = params.get("op").unwrap_or("echo").to_string();
    let ctx = Ctx { req, params };
    let result = dispatch(&op, &ctx).await;
    Ok(match result {
        Ok(value) => {
            let status = if op == "status" {
                ctx.params
                    .get("code")
                    .and_then(|c| c.parse::<u16>().ok())
                    .unwrap_or(200)
            } else {
                200
            };
            json_response(status, &value)
        }
        Err(e) => json_response(
            e.status,
            &json!({"op": op, "error": e.kind, "detail": e.detail}),
        ),
    })
}

async fn dispatch(op: &str, ctx: &Ctx) -> ProbeResult {
    match op {
        "echo" | "status" => Ok(echo(ctx)),
        "kv-get" | "kv-set" | "kv-delete" | "kv-exists" | "kv-keys" => kv_basic(op, ctx),
        "kv-increment" => {
            let bucket = ctx.wasi_bucket()?;
            let delta: i64 = ctx
                .params
                .get("delta")
                .unwrap_or("1")
                .parse()
                .map_err(|_| ProbeError::bad_request("delta must be an integer"))?;
            let value = atomics::increment(&bucket, ctx.param("key")?, delta)?;
            Ok(json!({ "value": value }))
        }
        "kv-cas" => kv_cas(ctx),
        "kv-cas-conflict" => kv_cas_conflict(ctx),
        "kv-cas-incr" => kv_cas_incr(ctx),
        "kv-create" => kv_create(ctx),
        "kv-batch-get" => {
            let bucket = ctx.wasi_bucket()?;
            let keys = split_keys(ctx.param("keys")?);
            let got = batch::get_many(&bucket, &keys)?;
            let mut values = Map::new();
            for (k, v) in got {
                values.insert(k, text(v));
            }
            Ok(json!({ "values": values, "returned": values.len() }))
        }
        "kv-batch-set" => {
            let bucket = ctx.wasi_bucket()?;
            let body: Map<String, Value> = serde_json::from_slice(ctx.req.body())
                .map_err(|e| ProbeError::bad_request(format!("body must be a JSON object: {e}")))?;
            let kvs: Vec<(String, Vec<u8>)> = body
                .into_iter()
                .map(|(k, v)| {
                    let bytes = match v {
                        Value::String(s) => s.into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                    (k, bytes)
                })
                .collect();
            batch::set_many(&bucket, &kvs)?;
            Ok(json!({ "ok": true, "count": kvs.len() }))
        }
        "kv-batch-delete" => {
            let bucket = ctx.wasi_bucket()?;
            let keys = split_keys(ctx.param("keys")?);
            batch::delete_many(&bucket, &keys)?;
            Ok(json!({ "ok": true }))
        }
        "outbound" => {
            let url = ctx.param("url")?.to_string();
            let method = match ctx.params.get("method").unwrap_or("GET") {
                "GET" => Method::Get,
                "POST" => Method::Post,
                "PUT" => Method::Put,
                "DELETE" => Method::Delete,
                other => Method::Other(other.to_string()),
            };
            let mut builder = Request::builder();
            builder.method(method).uri(url);
            if !ctx.req.body().is_empty() {
                builder.body(ctx.req.body().to_vec());
            }
            Ok(outbound(builder.build()).await)
        }
        "chain" => {
            let target = ctx.param("target")?;
            let path = ctx.params.get("path").unwrap_or("/");
            let url = format!("http://{target}.spin.internal{path}");
            let mut out = outbound(Request::get(url.clone()).build()).await;
            out["url"] = Value::String(url);
            Ok(out)
        }
        "var" => {
            let name = ctx.param("name")?;
            match spin_sdk::variables::get(name) {
                Ok(value) => Ok(json!({ "name": name, "value": value })),
                Err(e) => {
                    let kind = match &e {
                        spin_sdk::variables::Error::InvalidName(_) => "invalid-name",
                        spin_sdk::variables::Error::Undefined(_) => "undefined",
                        spin_sdk::variables::Error::Provider(_) => "provider",
                        spin_sdk::variables::Error::Other(_) => "other",
                    };
                    Err(ProbeError::failed(kind, format!("{e:?}")))
                }
            }
        }
        "file" => {
            let path = ctx.param("path")?;
            match std::fs::read(path) {
                Ok(bytes) => Ok(json!({
                    "path": path,
                    "len": bytes.len(),
                    "content": String::from_utf8_lossy(&bytes),
                })),
                Err(e) => Err(io_error(e)),
            }
        }
        "file-write" => {
            let path = ctx.param("path")?;
            match std::fs::write(path, ctx.req.body()) {
                Ok(()) => Ok(json!({ "path": path, "written": true })),
                Err(e) => Err(io_error(e)),
            }
        }
        "ls" => {
            let path = ctx.params.get("path").unwrap_or("/");
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io_error)? {
                let entry = entry.map_err(io_error)?;
                entries.push(entry.file_name().to_string_lossy().into_owned());
            }
            entries.sort();
            Ok(json!({ "path": path, "entries": entries }))
        }
        "env" => match ctx.params.get("name") {
            Some(name) => Ok(json!({ "name": name, "value": std::env::var(name).ok() })),
            None => {
                let env: Map<String, Value> = std::env::vars()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                Ok(json!({ "env": env }))
            }
        },
        "sleep" => {
            let ms: u64 = ctx
                .param("ms")?
                .parse()
                .map_err(|_| ProbeError::bad_request("ms must be an integer"))?;
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(json!({ "slept_ms": ms }))
        }
        "log" => {
            let msg = ctx.param("msg")?;
            println!("{msg}");
            eprintln!("{msg} (stderr)");
            Ok(json!({ "logged": msg }))
        }
        "panic" => panic!("probe asked to panic"),
        other => Err(ProbeError::bad_request(format!("unknown op `{other}`"))),
    }
}

fn echo(ctx: &Ctx) -> Value {
    let req = &ctx.req;
    let mut headers = Map::new();
    for (name, value) in req.headers() {
        headers.insert(
            name.to_ascii_lowercase(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    let body = req.body();
    let body_text = if body.len() <= ECHO_BODY_MAX {
        Value::String(String::from_utf8_lossy(body).into_owned())
    } else {
        Value::Null
    };
    json!({
        "name": std::env::var("PROBE_NAME").ok(),
        "method": req.method().to_string(),
        "uri": req.uri(),
        "path": req.path(),
        "query": req.query(),
        "headers": headers,
        "body_len": body.len(),
        "body": body_text,
    })
}

fn split_keys(keys: &str) -> Vec<String> {
    keys.split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

fn io_error(e: std::io::Error) -> ProbeError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => "not-found".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission-denied".to_string(),
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only-filesystem".to_string(),
        other => kebab(&format!("{other:?}")),
    };
    ProbeError::failed(kind, e.to_string())
}

fn kv_basic(op: &str, ctx: &Ctx) -> ProbeResult {
    let label = ctx.store_label();
    match ctx.iface()? {
        Iface::Spin => {
            let store = key_value::Store::open(label)?;
            match op {
                "kv-get" => Ok(json!({ "value": text(store.get(ctx.param("key")?)?) })),
                "kv-set" => {
                    store.set(ctx.param("key")?, &ctx.value())?;
                    Ok(json!({ "ok": true }))
                }
                "kv-delete" => {
                    store.delete(ctx.param("key")?)?;
                    Ok(json!({ "ok": true }))
                }
                "kv-exists" => Ok(json!({ "exists": store.exists(ctx.param("key")?)? })),
                _ => {
                    let mut keys = store.get_keys()?;
                    keys.sort();
                    Ok(json!({ "keys": keys }))
                }
            }
        }
        Iface::Wasi => {
            let bucket = wkv::open(label)?;
            match op {
                "kv-get" => Ok(json!({ "value": text(bucket.get(ctx.param("key")?)?) })),
                "kv-set" => {
                    bucket.set(ctx.param("key")?, &ctx.value())?;
                    Ok(json!({ "ok": true }))
                }
                "kv-delete" => {
                    bucket.delete(ctx.param("key")?)?;
                    Ok(json!({ "ok": true }))
                }
                "kv-exists" => Ok(json!({ "exists": bucket.exists(ctx.param("key")?)? })),
                _ => {
                    let mut keys = Vec::new();
                    let mut cursor: Option<String> = None;
                    loop {
                        let page = bucket.list_keys(cursor.as_deref())?;
                        keys.extend(page.keys);
                        match page.cursor {
                            Some(c) if !c.is_empty() => cursor = Some(c),
                            _ => break,
                        }
                        if keys.len() > 1_000_000 {
                            return Err(ProbeError::failed(
                                "runaway-cursor",
                                "list-keys never ended",
                            ));
                        }
                    }
                    keys.sort();
                    Ok(json!({ "keys": keys }))
                }
            }
        }
    }
}

fn cas_error(e: atomics::CasError) -> Result<&'static str, ProbeError> {
    match e {
        atomics::CasError::CasFailed(_) => Ok("cas-failed"),
        atomics::CasError::StoreError(e) => Err(e.into()),
    }
}

fn kv_cas(ctx: &Ctx) -> ProbeResult {
    let bucket = ctx.wasi_bucket()?;
    let key = ctx.param("key")?;
    let cas = atomics::Cas::new(&bucket, key)?;
    let current = cas.current()?;
    let expected: Option<Vec<u8>> = if ctx.params.flag("expect_absent") {
        None
    } else {
        Some(ctx.param("expect")?.as_bytes().to_vec())
    };
    if current != expected {
        return Ok(json!({ "swapped": false, "reason": "mismatch", "current": text(current) }));
    }
    match atomics::swap(cas, &ctx.value()) {
        Ok(()) => Ok(json!({ "swapped": true, "previous": text(current) })),
        Err(e) => {
            let reason = cas_error(e)?;
            Ok(json!({ "swapped": false, "reason": reason, "current": text(bucket.get(key)?) }))
        }
    }
}

fn kv_cas_conflict(ctx: &Ctx) -> ProbeResult {
    let bucket = ctx.wasi_bucket()?;
    let key = ctx.param("key")?;
    let cas = atomics::Cas::new(&bucket, key)?;
    let seen = cas.current()?;
    // Somebody else writes the key between `cas.new` and `swap`.
    let other = wkv::open(ctx.store_label())?;
    other.set(key, b"interloper")?;
    match atomics::swap(cas, &ctx.value()) {
        Ok(()) => {
            Ok(json!({ "swapped": true, "seen": text(seen), "current": text(bucket.get(key)?) }))
        }
        Err(e) => {
            let reason = cas_error(e)?;
            Ok(
                json!({ "swapped": false, "reason": reason, "seen": text(seen), "current": text(bucket.get(key)?) }),
            )
        }
    }
}

/// Read a JSON counter document `{"count": n}` (absent = 0), write n+1 with
/// CAS, retry on `cas-failed`.
fn kv_cas_incr(ctx: &Ctx) -> ProbeResult {
    let bucket = ctx.wasi_bucket()?;
    let key = ctx.param("key")?;
    let hold_ms: u64 = ctx
        .params
        .get("hold_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let max_attempts: u64 = ctx
        .params
        .get("max_attempts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if attempts > max_attempts {
            return Err(ProbeError::failed(
                "too-many-attempts",
                format!("gave up after {max_attempts} attempts"),
            ));
        }
        let cas = atomics::Cas::new(&bucket, key)?;
        let current = cas.current()?;
        let count = match &current {
            None => 0,
            Some(bytes) => {
                let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
                    ProbeError::failed(
                        "corrupt-counter",
                        format!("{e}: {:?}", String::from_utf8_lossy(bytes)),
                    )
                })?;
                doc["count"]
                    .as_i64()
                    .ok_or_else(|| ProbeError::failed("corrupt-counter", doc.to_string()))?
            }
        };
        if hold_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(hold_ms));
        }
        let next = json!({ "count": count + 1 }).to_string();
        match atomics::swap(cas, next.as_bytes()) {
            Ok(()) => return Ok(json!({ "value": count + 1, "attempts": attempts })),
            Err(e) => {
                cas_error(e)?;
            }
        }
    }
}

fn kv_create(ctx: &Ctx) -> ProbeResult {
    let bucket = ctx.wasi_bucket()?;
    let key = ctx.param("key")?;
    let cas = atomics::Cas::new(&bucket, key)?;
    if let Some(existing) = cas.current()? {
        return Ok(json!({ "created": false, "existing": text(Some(existing)) }));
    }
    match atomics::swap(cas, &ctx.value()) {
        Ok(()) => Ok(json!({ "created": true })),
        Err(e) => {
            let reason = cas_error(e)?;
            Ok(json!({ "created": false, "reason": reason, "existing": text(bucket.get(key)?) }))
        }
    }
}

async fn outbound(request: Request) -> Value {
    match spin_sdk::http::send::<_, Response>(request).await {
        Ok(resp) => {
            let body = String::from_utf8_lossy(resp.body()).into_owned();
            let parsed = serde_json::from_str::<Value>(&body).ok();
            json!({
                "ok": true,
                "status": *resp.status(),
                "body": body,
                "json": parsed,
            })
        }
        Err(SendError::Http(code)) => {
            json!({ "ok": false, "error": error_code_kind(&code), "detail": format!("{code:?}") })
        }
        Err(other) => json!({ "ok": false, "error": "send-error", "detail": format!("{other:?}") }),
    }
}

fn error_code_kind(code: &ErrorCode) -> String {
    match code {
        ErrorCode::HttpRequestDenied => "denied".into(),
        ErrorCode::TlsCertificateError => "tls-certificate-error".into(),
        ErrorCode::TlsProtocolError => "tls-protocol-error".into(),
        ErrorCode::TlsAlertReceived(_) => "tls-alert-received".into(),
        ErrorCode::ConnectionRefused => "connection-refused".into(),
        ErrorCode::DnsError(_) => "dns-error".into(),
        ErrorCode::ConnectionTimeout => "connection-timeout".into(),
        ErrorCode::DestinationNotFound => "destination-not-found".into(),
        ErrorCode::InternalError(_) => "internal-error".into(),
        other => {
            let debug = format!("{other:?}");
            let name = debug
                .trim_start_matches("ErrorCode::")
                .split(['(', ' ', '{'])
                .next()
                .unwrap_or("")
                .to_string();
            kebab(&name)
        }
    }
}

fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
