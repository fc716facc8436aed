//! A test's own PKI, made with rcgen: a CA, a server certificate for `127.0.0.1` and
//! `localhost` and a client certificate, as PEM files in a directory of the test's, for
//! the services a test starts with TLS (etcd in `security`, RabbitMQ in `amqps`).

use std::path::{Path, PathBuf};

use heat_pipeline::secrets::{ClientIdentity, Secret, TlsPem};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::unique_name;

/// The files of a [`Pki`], in its directory.
pub const CA: &str = "ca.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server-key.pem";
pub const CLIENT_CERT: &str = "client.pem";
pub const CLIENT_KEY: &str = "client-key.pem";

/// The CN of the client certificate.
pub const CLIENT_NAME: &str = "heat-pipeline";

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, as PEM
/// files in a directory of their own. Each CA has a name of its own, so that one PKI's CA
/// is a stranger to another's certificates (as another organisation's CA would be).
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("heat-pipeline test CA {}", unique_name("ca")),
        );
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &*ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(
            "test server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) =
            leaf(CLIENT_NAME, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
        for (name, pem) in [
            (CA, ca.pem()),
            (SERVER_CERT, server),
            (SERVER_KEY, server_key),
            (CLIENT_CERT, client),
            (CLIENT_KEY, client_key),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A file's path as text, for an environment variable or a config file.
    pub fn path_text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// The CA and the client certificate, as the settings would load them.
    pub fn client_tls(&self) -> TlsPem {
        TlsPem {
            ca: Some(self.read(CA)),
            identity: Some(ClientIdentity {
                cert: self.read(CLIENT_CERT),
                key: Secret::new(self.read(CLIENT_KEY)),
            }),
        }
    }
}
