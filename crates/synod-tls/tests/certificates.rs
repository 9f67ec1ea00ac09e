//! Loading PEM material and matching certificates to node names, with
//! certificates made at test time.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use synod_testkit::TestCa;
use synod_tls::{NodeTls, TlsError, TlsFiles, names, valid_name};

fn der(path: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn a_certificate_names_exactly_its_dns_names() {
    let ca = TestCa::new();
    let n1 = ca.issue("n1", &["n1", "127.0.0.1"]);
    assert!(names(&der(&n1.cert), "n1"));
    assert!(!names(&der(&n1.cert), "n2"));
    assert!(!names(&der(&n1.cert), "n"));
    assert!(valid_name("acceptor-a") && valid_name("synod-0.synod"));
    assert!(!valid_name("bad_name!") && !valid_name("127.0.0.1"));
}

#[test]
fn node_tls_loads_matching_files_and_names_what_is_wrong() {
    let ca = TestCa::new();
    let (n1, n2) = (ca.issue("n1", &["n1"]), ca.issue("n2", &["n2"]));
    let files = TlsFiles {
        ca: ca.ca_file().to_owned(),
        cert: n1.cert.clone(),
        key: n1.key.clone(),
    };
    NodeTls::load(&files).expect("matching files load");
    let missing = TlsFiles {
        cert: "/nonexistent/n1.crt".into(),
        ..files.clone()
    };
    let error = NodeTls::load(&missing).unwrap_err();
    assert!(
        matches!(&error, TlsError::File { path, .. } if path.ends_with("n1.crt")),
        "{error}"
    );
    let mismatched = TlsFiles {
        key: n2.key.clone(),
        ..files.clone()
    };
    assert!(
        NodeTls::load(&mismatched).is_err(),
        "n2's key with n1's certificate"
    );
    let key_as_cert = TlsFiles {
        cert: n1.key.clone(),
        ..files
    };
    let error = NodeTls::load(&key_as_cert).unwrap_err();
    assert!(error.to_string().contains("no PEM certificate"), "{error}");
}
