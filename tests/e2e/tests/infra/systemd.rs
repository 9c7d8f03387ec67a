//! systemd (`infra/systemd`).

use super::*;

/// `KEY=value` lines of an environment file (systemd's syntax, as the example uses it).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The values of `Key=` lines of the unit.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

/// Where the host caches compiled components without SPIN_OSB_CACHE_DIR (host/src/app.rs).
fn default_cache_dir() -> PathBuf {
    std::env::var_os("SPIN_OSB_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("spin-osb/components"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/spin-osb/components")
        })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_systemd_unit_verifies_and_its_command_line_serves_the_broker() {
    let unit_file = infra("systemd/spin-osb.service");
    let unit = read(&unit_file);
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart");
    let exec = exec[0];
    assert!(exec.starts_with("/usr/local/bin/spin-osb up "), "{exec}");
    assert_eq!(
        unit_values(&unit, "EnvironmentFile"),
        ["/etc/spin-osb/spin-osb.env"]
    );
    // The directories systemd creates are the ones the command line and config use.
    assert_eq!(unit_values(&unit, "StateDirectory"), ["spin-osb"]);
    assert!(exec.contains("--state-dir /var/lib/spin-osb"), "{exec}");
    assert!(read(&infra("spin/runtime-config-sqlite.toml")).contains("\"/var/lib/spin-osb/"));
    assert_eq!(unit_values(&unit, "CacheDirectory"), ["spin-osb"]);
    assert_eq!(
        unit_values(&unit, "Environment"),
        ["SPIN_OSB_CACHE_DIR=/var/cache/spin-osb"]
    );

    let dir = tempdir();
    // `systemd-analyze verify` checks every key and that ExecStart is executable, so it
    // runs on a copy that points at the built binary instead of /usr/local/bin.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let copy = write(
            dir.path(),
            "spin-osb.service",
            &unit.replace("/usr/local/bin/spin-osb", host_bin().to_str().unwrap()),
        );
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze verify");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify: {}\n{stderr}",
            out.status
        );
    } else {
        eprintln!("systemd-analyze is not installed: the unit's keys were not verified");
    }

    // Run ExecStart the way systemd would: the environment file's variables (with the
    // password and listen address of this test), ${VAR} expanded, and the unit's paths
    // mapped into a temporary root laid out as infra/systemd/README.md installs it.
    let env_example = read(&infra("systemd/spin-osb.env.example"));
    let mut env = env_file(&env_example);
    let password = format!("e2e-{}", new_id());
    assert!(
        env.iter()
            .any(|(k, v)| k == "SPIN_VARIABLE_BROKER_PASSWORD" && v.contains("CHANGE-ME")),
        "the example's password is a marked placeholder"
    );
    for (key, value) in &mut env {
        match key.as_str() {
            "SPIN_VARIABLE_BROKER_PASSWORD" => *value = password.clone(),
            "SPIN_OSB_LISTEN" => *value = "127.0.0.1:0".to_string(),
            _ => {}
        }
    }
    let username = env
        .iter()
        .find(|(k, _)| k == "SPIN_VARIABLE_BROKER_USERNAME")
        .map(|(_, v)| v.clone())
        .expect("SPIN_VARIABLE_BROKER_USERNAME");
    let root = dir.path();
    let opt = root.join("opt-spin-osb");
    std::fs::create_dir(&opt).unwrap();
    std::fs::copy(repo_root().join("spin.toml"), opt.join("spin.toml")).unwrap();
    copy_dir(&repo_root().join("catalog"), &opt.join("catalog"));
    std::os::unix::fs::symlink(repo_root().join("target"), opt.join("target")).unwrap();
    let etc = root.join("etc-spin-osb");
    let state = root.join("var-lib-spin-osb");
    std::fs::create_dir(&etc).unwrap();
    std::fs::create_dir(&state).unwrap();
    let paths = [
        ("/usr/local/bin/spin-osb", host_bin()),
        ("/opt/spin-osb", opt.clone()),
        ("/etc/spin-osb", etc.clone()),
        ("/var/lib/spin-osb", state.clone()),
        ("/var/cache/spin-osb", default_cache_dir()),
    ];
    let map = |text: &str| -> String {
        paths.iter().fold(text.to_string(), |t, (from, to)| {
            t.replace(from, to.to_str().unwrap())
        })
    };
    // The runtime config the README installs: runtime-config-sqlite.toml.
    write(
        &etc,
        "runtime-config.toml",
        &map(&read(&infra("spin/runtime-config-sqlite.toml"))),
    );
    let mut args: Vec<String> = Vec::new();
    for word in exec.split_whitespace() {
        let mut word = word.to_string();
        for (key, value) in &env {
            word = word.replace(&format!("${{{key}}}"), value);
        }
        assert!(
            !word.contains("${"),
            "{word}: undefined in spin-osb.env.example"
        );
        args.push(map(&word));
    }
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .current_dir(map(unit_values(&unit, "WorkingDirectory")[0]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SPIN_VARIABLE_") {
            cmd.env_remove(key);
        }
    }
    for value in unit_values(&unit, "Environment") {
        let (key, value) = value.split_once('=').unwrap();
        cmd.env(key, map(value));
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = ChildGuard::new(cmd.spawn().expect("run the unit's ExecStart"));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Serving ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let base = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("{args:?} did not serve"));
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let get = client
        .get(format!("{base}/v2/catalog"))
        .basic_auth(&username, Some(&password))
        .header("X-Broker-API-Version", API_VERSION)
        .send()
        .expect("GET /v2/catalog");
    assert_eq!(get.status().as_u16(), 200);
    let catalog = Catalog {
        json: get.json().expect("catalog JSON"),
    };
    let plan = plan_of(&catalog, "shared-credentials", "sync");
    let iid = new_id();
    let put = client
        .put(format!("{base}/v2/service_instances/{iid}"))
        .basic_auth(&username, Some(&password))
        .header("X-Broker-API-Version", API_VERSION)
        .json(&plan.provision_body(json!({})))
        .send()
        .expect("provision");
    assert_eq!(put.status().as_u16(), 201);
    let db = state.join("sqlite_key_value.db");
    assert!(
        sqlite_has_key(&db, &instance_key(&iid)),
        "state in {}",
        db.display()
    );

    // KillSignal=SIGTERM: a graceful stop.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        thread::sleep(Duration::from_millis(50));
    };
    let errors = errors.join().unwrap_or_default();
    assert!(status.success(), "exit after SIGTERM: {status}\n{errors}");
}
