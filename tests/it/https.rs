//! HTTPS in the daemon with certificate files made by a test CA (rcgen), trusted by the test's
//! own client only: the hub over TLS (HTTP/1.1 and HTTP/2), HSTS, the HTTP port redirecting
//! (except the ACME challenge path and the local CLI's API), `Secure` cookies, new files
//! served after `orrery config reload` while a connection opened before keeps working, and
//! `X-Forwarded-Proto` believed only from `http.trusted_proxies`.

use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::common::{free_port, Daemon};

/// A test CA: (its certificate PEM, an issuer for leaves).
fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Orrery test CA");
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf for 127.0.0.1 and localhost with common name `cn`, written to `dir`: (cert, key).
fn leaf(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, ca).unwrap();
    let (c, k) = (dir.join("hub.crt"), dir.join("hub.key"));
    // Written whole, then renamed, as an operator's tooling replaces them.
    std::fs::write(dir.join("new.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("new.key"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("new.key"), &k).unwrap();
    std::fs::rename(dir.join("new.crt"), &c).unwrap();
    (c, k)
}

/// A client trusting only `ca_pem`.
fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What the daemon says it serves (the admin API's TLS status).
async fn cn_from_status(port: u16, ca_pem: &str) -> String {
    let r = client(ca_pem)
        .get(format!("https://127.0.0.1:{port}/hub/api/orrery/tls"))
        .header(
            "Authorization",
            format!("token {}", crate::common::ADMIN_SERVICE_TOKEN),
        )
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    v["certificate"]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_string()
        + "|"
        + &v["certificate"]["names"].to_string()
}

#[tokio::test]
async fn https_with_certificate_files_redirects_reloads_and_sets_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, ca) = test_ca();
    let (cert, key) = leaf(dir.path(), &ca, "first");
    let https_port = free_port();
    let d = Daemon::start(&format!(
        "[https]\nenabled = true\nport = {https_port}\n[https.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let tls = client(&ca_pem);
    let base = format!("https://127.0.0.1:{https_port}");

    // Over TLS, with HSTS; HTTP/2 when the client offers it (ALPN).
    let r = tls.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = h2.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);

    // The HTTP port redirects (keeping the path), except the ACME challenge path and the
    // local CLI's API.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("{}/hub/login?next=%2Fhub%2Fhome", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://127.0.0.1:{https_port}/hub/login?next=%2Fhub%2Fhome").as_str()
    );
    let r = plain
        .get(format!("{}/.well-known/acme-challenge/unknown", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the challenge path is not redirected");
    let (code, out, err) = d.cli(&["users", "list"], None);
    assert_eq!(code, 0, "the CLI still reaches the daemon: {out}{err}");

    // Cookies set over HTTPS are Secure.
    let r = tls.get(format!("{base}/hub/login")).send().await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("_xsrf=") && cookie.contains("; Secure"),
        "{cookie}"
    );

    // A connection opened before the files change keeps working, and new connections get
    // the new certificate after `orrery config reload` (the files are also watched).
    let before = cn_from_status(https_port, &ca_pem).await;
    assert!(before.contains("127.0.0.1"), "{before}");
    let kept = client(&ca_pem);
    let r = kept.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (ca2_pem, ca2) = test_ca();
    leaf(dir.path(), &ca2, "second");
    let (code, out, err) = d.cli(&["config", "reload"], None);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A client trusting only the new CA connects once the new certificate is served.
        if let Ok(r) = client(&ca2_pem)
            .get(format!("{base}/hub/health"))
            .send()
            .await
        {
            assert_eq!(r.status(), 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection opened before (pooled by `kept`) still answers, without a new
    // handshake (which would fail: `kept` trusts only the first CA).
    let r = kept.get(format!("{base}/hub/health")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the open connection was kept");
}

/// `X-Forwarded-Proto: https` makes cookies `Secure` only from an address in
/// `http.trusted_proxies`.
#[tokio::test]
async fn forwarded_proto_is_believed_only_from_trusted_proxies() {
    let secure_xsrf = |d: &Daemon| {
        let url = format!("{}/hub/login", d.url);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("X-Forwarded-Proto", "https")
                .send()
                .await
                .unwrap();
            let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
            assert!(cookie.starts_with("_xsrf="), "{cookie}");
            cookie.contains("; Secure")
        }
    };
    let untrusted = Daemon::start("").await;
    assert!(
        !secure_xsrf(&untrusted).await,
        "an untrusted client cannot claim HTTPS"
    );
    let trusted = Daemon::start("[http]\ntrusted_proxies = [\"127.0.0.0/8\"]\n").await;
    assert!(secure_xsrf(&trusted).await, "a trusted proxy can");
}
