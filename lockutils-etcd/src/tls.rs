//! TLS for `etcd3+https://`, through rustls (ring): the server checked against `ca_cert` (or
//! the system's roots), a client certificate from `cert_cert` and `cert_key`.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::options::Options;

/// The TLS configuration of `options` (an unused one for `etcd3+http://`). Errors name the
/// option and the file, never a file's content.
pub(crate) fn client_config(options: &Options) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    let mut roots = RootCertStore::empty();
    if options.tls {
        match &options.ca_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("option ca_cert: cannot read {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "option ca_cert: no PEM certificate in {}",
                        path.display()
                    ));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| {
                        format!(
                            "option ca_cert: a certificate of {} is unusable: {e}",
                            path.display()
                        )
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // Some system stores hold certificates rustls cannot use: skip those.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(
                        "etcd3+https:// without ca_cert, and no usable certificate in \
                                the system's store: set ca_cert to the CA of etcd's certificate"
                            .to_owned(),
                    );
                }
            }
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&options.cert_cert, &options.cert_key) {
        (Some(cert_path), Some(key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!("option cert_cert: cannot read {}: {e}", cert_path.display())
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "option cert_cert: no PEM certificate in {}",
                    cert_path.display()
                ));
            }
            // The key's own error could quote it: say only where it is.
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|_| {
                format!(
                    "option cert_key: no readable PEM private key in {}",
                    key_path.display()
                )
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "options cert_cert and cert_key ({} and {}): {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}
