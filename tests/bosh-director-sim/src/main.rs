//! `bosh-director-sim`: run the BOSH director simulator by hand, e.g. to
//! point a broker or `curl` at it. Prints its URL (and the CA file for
//! HTTPS), then serves until killed.

use std::time::Duration;

use bosh_director_sim::{AuthConfig, SimConfig, Simulator};

const USAGE: &str = "usage: bosh-director-sim [--port P] [--tls] [--ca-out FILE]
                         [--user U] [--password P]
                         [--uaa] [--client-id ID] [--client-secret S] [--token-ttl SECS]
                         [--queued-ms N] [--processing-ms N]

A BOSH director SIMULATOR on 127.0.0.1 (no VMs, no releases, no CPI).
Defaults: ephemeral port, plain HTTP, basic auth admin/admin-password.";

fn main() {
    let mut config = SimConfig::default();
    let mut uaa = false;
    let (mut user, mut password) = ("admin".to_string(), "admin-password".to_string());
    let (mut client_id, mut client_secret) = ("broker".to_string(), "broker-secret".to_string());
    let mut token_ttl = 43_199u64;
    let mut ca_out: Option<String> = None;

    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{flag} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        let number = |v: String| -> u64 {
            v.parse().unwrap_or_else(|_| {
                eprintln!("not a number: {v}\n{USAGE}");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--port" => config.port = number(value()) as u16,
            "--tls" => config.tls = true,
            "--ca-out" => ca_out = Some(value()),
            "--uaa" => uaa = true,
            "--user" => user = value(),
            "--password" => password = value(),
            "--client-id" => client_id = value(),
            "--client-secret" => client_secret = value(),
            "--token-ttl" => token_ttl = number(value()),
            "--queued-ms" => config.timings.queued = Duration::from_millis(number(value())),
            "--processing-ms" => config.timings.processing = Duration::from_millis(number(value())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }
    config.auth = if uaa {
        AuthConfig::Uaa {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            token_ttl: Duration::from_secs(token_ttl),
        }
    } else {
        AuthConfig::Basic {
            user: user.clone(),
            password: password.clone(),
        }
    };

    let sim = Simulator::try_start(config).unwrap_or_else(|e| {
        eprintln!("cannot start the simulator: {e}");
        std::process::exit(1)
    });
    println!("bosh-director-simulator listening at {}", sim.base_url());
    if let Some(url) = sim.uaa_url() {
        println!("auth: uaa at {url}, client {client_id} / {client_secret}");
    } else {
        println!("auth: basic {user} / {password}");
    }
    if let Some(pem) = sim.ca_pem() {
        let path = ca_out.unwrap_or_else(|| {
            std::env::temp_dir()
                .join(format!("bosh-director-sim-{}-ca.pem", sim.port()))
                .display()
                .to_string()
        });
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("cannot write the CA to {path}: {e}");
            std::process::exit(1)
        }
        println!("ca: {path}");
    }
    loop {
        std::thread::park();
    }
}
