//! nginx in front of rotel with TLS and mTLS, and throwaway certificates (see delivery_tls.rs).
//!
//! [`Certs::generate`] makes, with the `openssl` CLI, in a temporary directory that goes away
//! with it: a test CA, a server certificate it signed (SAN `DNS:localhost, IP:127.0.0.1`), a
//! client certificate it signed, and an unrelated second CA for the wrong-CA cases.
//! [`Nginx::start`] runs nginx (one process, no daemon, every path in its own temporary
//! directory, loopback only) with a TLS port and an mTLS port, both proxying to rotel.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, nginx_bin};

/// The openssl configuration: a request section (the subject is always given with `-subj`)
/// and one extension section per kind of certificate.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Throwaway certificates and keys (PEM), deleted with this value.
pub struct Certs {
    /// The test CA: it signed the server and client certificates.
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second CA that signed nothing here.
    pub other_ca: PathBuf,
    pub other_ca_key: PathBuf,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (is it installed? `bash .ci/peers`)");
    assert!(
        out.status.success(),
        "openssl {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

const KEY_ARGS: [&str; 6] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
];

impl Certs {
    pub fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("openssl.cnf"), OPENSSL_CNF).unwrap();
        let self_signed_ca = |name: &str, cn: &str| {
            let mut args = vec![
                "req",
                "-x509",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca_ext",
                "-days",
                "2",
            ];
            args.extend(KEY_ARGS);
            let key = format!("{name}.key");
            let crt = format!("{name}.crt");
            let subj = format!("/CN={cn}");
            args.extend([key.as_str(), "-out", crt.as_str(), "-subj", subj.as_str()]);
            openssl(d, &args);
        };
        self_signed_ca("ca", "tracespool test CA");
        self_signed_ca("other-ca", "tracespool unrelated CA");
        let signed = |name: &str, cn: &str, ext: &str, serial: &str| {
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let subj = format!("/CN={cn}");
            let mut args = vec!["req", "-new", "-config", "openssl.cnf"];
            args.extend(KEY_ARGS);
            args.extend([key.as_str(), "-out", csr.as_str(), "-subj", subj.as_str()]);
            openssl(d, &args);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "2",
                    "-extfile",
                    "openssl.cnf",
                    "-extensions",
                    ext,
                    "-out",
                    &crt,
                ],
            );
        };
        signed("server", "localhost", "server_ext", "2");
        signed("client", "tracespool test client", "client_ext", "3");
        Certs {
            ca: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            other_ca: d.join("other-ca.crt"),
            other_ca_key: d.join("other-ca.key"),
            dir,
        }
    }

    /// The directory that holds them all.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// nginx terminating TLS (and mTLS) on loopback in front of an OTLP/HTTP receiver.
pub struct Nginx {
    pub tls_port: u16,
    pub mtls_port: u16,
    pub certs: Certs,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx proxying to `127.0.0.1:upstream_http_port`, with fresh certificates, and
    /// waits until both ports accept connections.
    pub fn start(upstream_http_port: u16) -> Nginx {
        Nginx::start_with(Certs::generate(), upstream_http_port)
    }

    pub fn start_with(certs: Certs, upstream_http_port: u16) -> Nginx {
        Nginx::start_proxying(certs, Proxy::Http(upstream_http_port))
    }

    /// Starts nginx passing gRPC (HTTP/2 over TLS) to `127.0.0.1:upstream_grpc_port`.
    pub fn start_grpc(upstream_grpc_port: u16) -> Nginx {
        Nginx::start_proxying(Certs::generate(), Proxy::Grpc(upstream_grpc_port))
    }

    fn start_proxying(certs: Certs, proxy: Proxy) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let mut last_error = String::new();
        // A port that was free a moment ago may be taken when nginx binds it: try again.
        for _ in 0..5 {
            let (tls_port, mtls_port) = (free_port(), free_port());
            if tls_port == mtls_port {
                continue;
            }
            let conf = config(dir.path(), &certs, tls_port, mtls_port, proxy);
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            let mut child = Command::new(nginx_bin())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                // Before the configuration is read, nginx logs to its compiled-in path.
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "start {}: {e} (`bash .ci/peers` installs it)",
                        nginx_bin().display()
                    )
                });
            let start = Instant::now();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "nginx exited ({status}): {}",
                        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                    );
                    break;
                }
                let up = |p| TcpStream::connect(("127.0.0.1", p)).is_ok();
                if up(tls_port) && up(mtls_port) {
                    return Nginx {
                        tls_port,
                        mtls_port,
                        certs,
                        child: Some(child),
                        dir,
                    };
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = "nginx did not listen within 10s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("could not start nginx: {last_error}");
    }

    /// TLS with the server certificate; no client certificate asked for.
    pub fn tls_endpoint(&self) -> String {
        format!("https://localhost:{}/v1/traces", self.tls_port)
    }

    /// TLS, and a client certificate signed by the test CA is required.
    pub fn mtls_endpoint(&self) -> String {
        format!("https://localhost:{}/v1/traces", self.mtls_port)
    }

    /// gRPC over TLS (with [`start_grpc`](Nginx::start_grpc)): a base URL, no path.
    pub fn grpc_tls_endpoint(&self) -> String {
        format!("https://localhost:{}", self.tls_port)
    }

    /// gRPC over mTLS (with [`start_grpc`](Nginx::start_grpc)).
    pub fn grpc_mtls_endpoint(&self) -> String {
        format!("https://localhost:{}", self.mtls_port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// One line per request nginx answered (`$status $request`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- nginx access log ---\n{}", self.access_log());
            eprintln!("--- nginx error log ---\n{}", self.error_log());
        }
    }
}

/// What nginx passes requests to.
#[derive(Clone, Copy)]
enum Proxy {
    /// OTLP/HTTP on this port.
    Http(u16),
    /// OTLP/gRPC on this port (nginx listens with HTTP/2).
    Grpc(u16),
}

fn config(dir: &Path, certs: &Certs, tls_port: u16, mtls_port: u16, proxy: Proxy) -> String {
    let (http2, pass) = match proxy {
        Proxy::Http(port) => ("", format!("proxy_pass http://127.0.0.1:{port};")),
        Proxy::Grpc(port) => (" http2", format!("grpc_pass grpc://127.0.0.1:{port};")),
    };
    let d = dir.display();
    let crt = certs.server_cert.display();
    let key = certs.server_key.display();
    let ca = certs.ca.display();
    format!(
        "\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 64;
}}

http {{
    log_format brief '$status $request';
    access_log {d}/access.log brief;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    client_max_body_size 16m;

    server {{
        listen 127.0.0.1:{tls_port} ssl{http2};
        server_name localhost;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        location / {{
            {pass}
        }}
    }}

    server {{
        listen 127.0.0.1:{mtls_port} ssl{http2};
        server_name localhost;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{
            {pass}
        }}
    }}
}}
"
    )
}
