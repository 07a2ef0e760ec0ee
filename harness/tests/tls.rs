//! `wss://`: a reference server serving TLS with a self-signed certificate
//! made here, and a short scenario through it that trusts the certificate
//! with `--ca`.

mod common;

use common::*;

#[test]
fn a_scenario_runs_over_tls_with_a_custom_ca() {
    let seed = seed("tls");
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("a self-signed certificate");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let server = ExternalServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(server.ws_url.starts_with("wss://"), "{}", server.ws_url);
    let scenario = write_scenario(dir.path(), "tls", SMALL_EXTERNAL);
    let runs = dir.path().join("runs");
    let run = server.run(
        &scenario,
        &server.ws_url,
        &runs,
        seed,
        &["--ca", cert.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = summary(&run_dir(&runs));
    assert_eq!(summary["verdict"], "valid");
    assert!(summary["totals"]["deliveries_live"].as_u64().unwrap() > 0);
}
