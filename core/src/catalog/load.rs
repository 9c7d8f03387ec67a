//! Reading catalog files and checking them: syntax and types while parsing (with line and
//! column), then the OSB and broker rules on the parsed services, collecting every problem.

use std::collections::HashMap;
use std::path::Path;

use super::error::{CatalogError, Problem, Problems};
use super::model::{CatalogFile, InputParameters, ServiceOffering};
use super::{Catalog, PlanSchemas, PlanView};
use crate::quota::Quotas;
use crate::schema::ParameterSchema;

/// Reads every `*.yaml`/`*.yml` file of `dir`, sorted by name.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, CatalogError> {
    let label = dir.display().to_string();
    let fail = |message: String| {
        CatalogError::new(vec![Problem {
            file: label.clone(),
            position: None,
            path: String::new(),
            message,
        }])
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read directory: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("cannot read directory: {e}")))?;
        let path = entry.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml && path.is_file() {
            names.push(entry.file_name());
        }
    }
    if names.is_empty() {
        return Err(fail(
            "no catalog files (*.yaml, *.yml) in this directory".to_owned(),
        ));
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((file, text)),
            Err(e) => problems.push(Problem {
                file,
                position: None,
                path: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(CatalogError::new(problems))
    }
}

/// Parses and validates named YAML texts into a catalog.
pub(crate) fn load<N: AsRef<str>, T: AsRef<str>>(
    files: &[(N, T)],
) -> Result<Catalog, CatalogError> {
    let mut problems = Vec::new();
    let mut parsed: Vec<(&str, Vec<ServiceOffering>)> = Vec::new();
    let mut quotas: Option<(&str, Quotas)> = None;
    for (name, text) in files {
        match parse_file(name.as_ref(), text.as_ref()) {
            Ok(file) => {
                if let Some(declared) = file.quotas {
                    match &quotas {
                        Some((first, _)) => problems.push(Problem {
                            file: name.as_ref().to_owned(),
                            position: None,
                            path: "quotas".into(),
                            message: format!(
                                "the broker's quotas are already declared in {first}; declare them in one file"
                            ),
                        }),
                        None => quotas = Some((name.as_ref(), declared)),
                    }
                }
                parsed.push((name.as_ref(), file.services))
            }
            Err(problem) => problems.push(problem),
        }
    }

    let mut services = Vec::new();
    let mut schemas = Vec::new();
    let mut seen = Seen::default();
    for (file, file_services) in parsed {
        let mut out = Problems {
            file,
            out: &mut problems,
        };
        for (index, service) in file_services.into_iter().enumerate() {
            let path = format!("services[{index}]");
            schemas.push(validate_service(&service, &path, &mut seen, &mut out));
            services.push(service);
        }
    }
    if !problems.is_empty() {
        return Err(CatalogError::new(problems));
    }
    let sources = files
        .iter()
        .map(|(name, _)| {
            let name = name.as_ref();
            name.rsplit(['/', '\\']).next().unwrap_or(name).to_owned()
        })
        .collect();
    Ok(Catalog::new(
        services,
        schemas,
        sources,
        quotas.map(|(_, q)| q),
    ))
}

fn parse_file(file: &str, text: &str) -> Result<CatalogFile, Problem> {
    let problem = |position, path: String, message: String| Problem {
        file: file.to_owned(),
        position,
        path,
        message,
    };
    if text.trim().is_empty() || is_only_comments(text) {
        return Err(problem(
            None,
            String::new(),
            "empty file: expected a top-level `services:` list".to_owned(),
        ));
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, CatalogFile>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    match result {
        Ok(catalog) => Ok(catalog),
        Err(error) => {
            let position = error.location().map(|l| (l.line(), l.column()));
            let mut message = error.without_snippet().to_string();
            if let Some((line, column)) = position {
                let suffix = format!(" at line {line}, column {column}");
                if let Some(stripped) = message.strip_suffix(&suffix) {
                    message = stripped.to_owned();
                }
            }
            // `?` stands for a key serde_path_to_error could not name (a duplicate key).
            let path = path.trim_end_matches(".?").trim_end_matches('.').to_owned();
            let message = message
                .trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable")
                .to_owned();
            Err(problem(position, path, message))
        }
    }
}

fn is_only_comments(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// Ids and names seen so far, each with where it was first defined.
#[derive(Default)]
struct Seen {
    service_ids: HashMap<String, String>,
    service_names: HashMap<String, String>,
    plan_ids: HashMap<String, String>,
}

fn first_definition(map: &mut HashMap<String, String>, key: &str, at: String) -> Option<String> {
    match map.get(key) {
        Some(first) => Some(first.clone()),
        None => {
            map.insert(key.to_owned(), at);
            None
        }
    }
}

fn non_blank(value: &str, path: String, what: &str, problems: &mut Problems<'_>) {
    if value.trim().is_empty() {
        problems.push(path, format!("{what} must be a non-empty string"));
    }
}

fn validate_service(
    service: &ServiceOffering,
    path: &str,
    seen: &mut Seen,
    problems: &mut Problems<'_>,
) -> Vec<PlanSchemas> {
    non_blank(&service.id, format!("{path}.id"), "id", problems);
    non_blank(&service.name, format!("{path}.name"), "name", problems);
    non_blank(
        &service.description,
        format!("{path}.description"),
        "description",
        problems,
    );
    let file = problems.file;
    let here = |field: &str| format!("{file}: {path}.{field}");
    if !service.id.trim().is_empty() {
        if let Some(first) = first_definition(&mut seen.service_ids, &service.id, here("id")) {
            problems.push(
                format!("{path}.id"),
                format!(
                    "duplicate service id `{}` (first defined at {first})",
                    service.id
                ),
            );
        }
    }
    if !service.name.trim().is_empty() {
        if let Some(first) = first_definition(&mut seen.service_names, &service.name, here("name"))
        {
            problems.push(
                format!("{path}.name"),
                format!(
                    "duplicate service name `{}` (first defined at {first})",
                    service.name
                ),
            );
        }
    }
    if let Some(client) = &service.dashboard_client {
        non_blank(
            &client.id,
            format!("{path}.dashboard_client.id"),
            "id",
            problems,
        );
        non_blank(
            &client.secret,
            format!("{path}.dashboard_client.secret"),
            "secret",
            problems,
        );
    }
    if service.plans.is_empty() {
        problems.push(format!("{path}.plans"), "a service needs at least one plan");
    }

    let mut plan_names: HashMap<&str, usize> = HashMap::new();
    let mut compiled = Vec::with_capacity(service.plans.len());
    for (index, plan) in service.plans.iter().enumerate() {
        let path = format!("{path}.plans[{index}]");
        non_blank(&plan.id, format!("{path}.id"), "id", problems);
        non_blank(&plan.name, format!("{path}.name"), "name", problems);
        non_blank(
            &plan.description,
            format!("{path}.description"),
            "description",
            problems,
        );
        if !plan.id.trim().is_empty() {
            let at = format!("{file}: {path}.id");
            if let Some(first) = first_definition(&mut seen.plan_ids, &plan.id, at) {
                problems.push(
                    format!("{path}.id"),
                    format!("duplicate plan id `{}` (first defined at {first}); plan ids must be unique across all services", plan.id),
                );
            }
        }
        if !plan.name.trim().is_empty() {
            if let Some(first) = plan_names.insert(plan.name.as_str(), index) {
                problems.push(
                    format!("{path}.name"),
                    format!(
                        "duplicate plan name `{}` in this service (also plans[{first}])",
                        plan.name
                    ),
                );
                plan_names.insert(plan.name.as_str(), first);
            }
        }
        if plan.maximum_polling_duration == Some(0) {
            problems.push(
                format!("{path}.maximum_polling_duration"),
                "must be a positive number of seconds",
            );
        }
        if let Some(info) = &plan.maintenance_info {
            if let Err(error) = semver::Version::parse(&info.version) {
                problems.push(
                    format!("{path}.maintenance_info.version"),
                    format!("`{}` is not a semantic version 2.0: {error}", info.version),
                );
            }
        }

        let mut schemas = PlanSchemas::default();
        if let Some(written) = &plan.schemas {
            if let Some(instance) = &written.service_instance {
                let at = format!("{path}.schemas.service_instance");
                schemas.instance_create =
                    compile(instance.create.as_ref(), &format!("{at}.create"), problems);
                schemas.instance_update =
                    compile(instance.update.as_ref(), &format!("{at}.update"), problems);
            }
            if let Some(binding) = &written.service_binding {
                let at = format!("{path}.schemas.service_binding");
                schemas.binding_create =
                    compile(binding.create.as_ref(), &format!("{at}.create"), problems);
            }
        }

        let view = PlanView {
            service,
            plan,
            schemas: &schemas,
            broker_quotas: None,
        };
        if !view.bindable() {
            let reason = if plan.bindable == Some(false) {
                "the plan sets `bindable: false`"
            } else {
                "the plan inherits `bindable: false` from its service"
            };
            if plan
                .schemas
                .as_ref()
                .is_some_and(|s| s.service_binding.is_some())
            {
                problems.push(
                    format!("{path}.schemas.service_binding"),
                    format!("is never used: {reason}"),
                );
            }
            if plan.binding_rotatable == Some(true) {
                problems.push(
                    format!("{path}.binding_rotatable"),
                    format!("cannot be true: {reason}"),
                );
            }
            if plan.binding_lifetime.is_some() {
                problems.push(
                    format!("{path}.binding_lifetime"),
                    format!("is never used: {reason}"),
                );
            }
        }
        if let Some(lifetime) = &plan.binding_lifetime {
            if lifetime.expires_after_seconds == 0 {
                problems.push(
                    format!("{path}.binding_lifetime.expires_after_seconds"),
                    "must be greater than 0",
                );
            }
            if lifetime
                .renew_before_expiry_seconds
                .is_some_and(|r| r > lifetime.expires_after_seconds)
            {
                problems.push(
                    format!("{path}.binding_lifetime.renew_before_expiry_seconds"),
                    "must not exceed expires_after_seconds",
                );
            }
        }
        plan.backend
            .validate(&view, &format!("{path}.backend"), problems);
        compiled.push(schemas);
    }
    compiled
}

fn compile(
    input: Option<&InputParameters>,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<ParameterSchema> {
    let schema = input?.parameters.as_ref()?;
    match ParameterSchema::compile(schema) {
        Ok(compiled) => Some(compiled),
        Err(error) => {
            problems.push(
                format!("{path}.parameters"),
                format!("invalid JSON Schema: {error}"),
            );
            None
        }
    }
}
