//! A broker with security, for the security scenarios (`tests/security.rs`):
//! TLS and SASL_SSL listeners, SCRAM users, and ACLs under KRaft's standard
//! authorizer, all set up at start from the environment and files, on the
//! ordinary test image.
//!
//! * Certificates are generated at run time ([`Certificates::generate`],
//!   with rcgen), never stored: a CA, a server certificate for `127.0.0.1`
//!   signed by it, an expired one (server side) signed by it, a client
//!   certificate signed by it, and an unrelated second CA. The broker reads its key and certificate as PEM
//!   files (`ssl.keystore.type=PEM`).
//! * Listeners, each with its own published host port:
//!   `SASL_SSL` (SCRAM-SHA-512, behind a [`Proxy`] that counts
//!   connections), `SSL` (the valid certificate), `EXPIRED` (TLS with
//!   the expired certificate) and `MTLS` (TLS requiring a client
//!   certificate signed by the CA; the client is `User:CN=producer-tls`). The `PLAINTEXT` listener stays, behind the
//!   usual proxy, for the harness only: readiness checks and the
//!   independent read-back.
//! * Users: `producer` and `admin`, SCRAM-SHA-512 credentials created when
//!   the storage is formatted (`--add-scram`), with passwords made up per
//!   run. Super users: `admin`, and `ANONYMOUS`, the principal of the
//!   plaintext listeners (the controller's, the broker's own, and the
//!   harness's).
//! * ACLs: `producer` and the mutual-TLS client may write, describe and
//!   create the topics whose names start with [`ALLOWED_PREFIX`], and
//!   nothing else (created with
//!   `CreateAcls` through the plaintext listener).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

use crate::cluster::wire::{TopicPrefixAcl, create_topic_prefix_acls};
use crate::kafka::{BrokerOptions, Error, Kafka, Ports};
use crate::proxy::Proxy;

/// The topics the `producer` user may write start with this.
pub const ALLOWED_PREFIX: &str = "sec-allowed-";

/// The SCRAM user the scenarios' producers authenticate as.
pub const PRODUCER_USER: &str = "producer";

/// The common name of the client certificate of the `MTLS` listener; its
/// principal is `User:CN=<this>`.
pub const MTLS_CLIENT: &str = "producer-tls";

/// The SCRAM mechanism of the `SASL_SSL` listener.
pub const SCRAM_MECHANISM: &str = "SCRAM-SHA-512";

/// Where the broker reads its PEM key stores.
const TLS_DIR: &str = "/opt/kafka/tls";

/// Kafka's ACL operation codes used here.
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DESCRIBE: i8 = 8;

/// Certificates and keys in PEM, made for one run.
#[derive(Clone)]
pub struct Certificates {
    /// The CA that signed the broker's certificates.
    pub ca: String,
    /// A CA unrelated to the broker's.
    pub other_ca: String,
    /// The broker's private key (PKCS#8) and certificate for `127.0.0.1`.
    pub server: String,
    /// The same, but valid only in January 2020.
    pub expired_server: String,
    /// A client certificate for [`MTLS_CLIENT`], signed by the CA.
    pub client_certificate: String,
    /// Its private key (PKCS#8).
    pub client_key: String,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificates { .. }")
    }
}

/// A CA named `name`: its certificate in PEM and its issuer.
fn make_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key)?.pem();
    Ok((pem, Issuer::new(params, key)))
}

/// A key and a certificate for `127.0.0.1` signed by `issuer`, valid
/// between the two dates of `validity` when given, in one PEM.
fn make_server(
    issuer: &Issuer<'_, KeyPair>,
    validity: Option<(Ymd, Ymd)>,
) -> Result<String, Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
        params.not_before = date_time_ymd(y0, m0, d0);
        params.not_after = date_time_ymd(y1, m1, d1);
    }
    let cert = params.signed_by(&key, issuer)?;
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}

/// A key and a client certificate for `name` signed by `issuer`, in PEM.
fn make_client(issuer: &Issuer<'_, KeyPair>, name: &str) -> Result<(String, String), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, issuer)?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// A date as (year, month, day).
type Ymd = (i32, u8, u8);

impl Certificates {
    /// Makes the CA, the unrelated CA and the server certificates.
    pub fn generate() -> Result<Self, Error> {
        let (ca, issuer) = make_ca("robust-producer test CA")?;
        let (other_ca, _) = make_ca("an unrelated CA")?;
        let (client_key, client_certificate) = make_client(&issuer, MTLS_CLIENT)?;
        Ok(Self {
            ca,
            other_ca,
            server: make_server(&issuer, None)?,
            expired_server: make_server(&issuer, Some(((2020, 1, 1), (2020, 2, 1))))?,
            client_certificate,
            client_key,
        })
    }
}

/// A free loopback port (free when asked; the broker binds it soon after).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A broker with the listeners, users and ACLs of the module docs.
pub struct SecureKafka {
    /// The broker (its plaintext address is for the harness only).
    pub kafka: Kafka,
    /// The certificates the broker was given.
    pub certificates: Certificates,
    sasl_proxy: Proxy,
    ssl_port: u16,
    expired_port: u16,
    mtls_port: u16,
    producer_password: String,
}

impl std::fmt::Debug for SecureKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureKafka")
            .field("kafka", &self.kafka)
            .field("sasl_ssl", &self.sasl_proxy.addr())
            .field("ssl_port", &self.ssl_port)
            .field("expired_port", &self.expired_port)
            .finish_non_exhaustive()
    }
}

impl SecureKafka {
    /// Generates certificates and passwords, starts the broker and creates
    /// the ACLs.
    pub async fn start() -> Result<Self, Error> {
        let certificates = Certificates::generate()?;
        let producer_password = uuid::Uuid::new_v4().simple().to_string();
        let admin_password = uuid::Uuid::new_v4().simple().to_string();
        let ports = Ports::reserve()?;
        let plain_proxy = Kafka::proxy_only(ports).await?;
        let sasl_listen = free_port()?;
        let sasl_broker = free_port()?;
        let ssl_port = free_port()?;
        let expired_port = free_port()?;
        let mtls_port = free_port()?;
        let sasl_proxy = Proxy::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, sasl_listen)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, sasl_broker)),
        )
        .await?;
        let env = |k: &str, v: String| (k.to_owned(), v);
        let options = BrokerOptions {
            env: vec![
                env(
                    "KAFKA_LISTENERS",
                    "PLAINTEXT://0.0.0.0:9092,BROKER://127.0.0.1:9094,\
                     CONTROLLER://127.0.0.1:9093,SASL_SSL://0.0.0.0:9095,\
                     SSL://0.0.0.0:9096,EXPIRED://0.0.0.0:9097,MTLS://0.0.0.0:9098"
                        .to_owned(),
                ),
                env(
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                    "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT,\
                     SASL_SSL:SASL_SSL,SSL:SSL,EXPIRED:SSL,MTLS:SSL"
                        .to_owned(),
                ),
                env(
                    "KAFKA_ADVERTISED_LISTENERS",
                    format!(
                        "PLAINTEXT://127.0.0.1:{},BROKER://127.0.0.1:9094,\
                         SASL_SSL://127.0.0.1:{sasl_listen},SSL://127.0.0.1:{ssl_port},\
                         EXPIRED://127.0.0.1:{expired_port},MTLS://127.0.0.1:{mtls_port}",
                        ports.proxy
                    ),
                ),
                env("KAFKA_SSL_KEYSTORE_TYPE", "PEM".to_owned()),
                env(
                    "KAFKA_SSL_KEYSTORE_LOCATION",
                    format!("{TLS_DIR}/server.pem"),
                ),
                env(
                    "KAFKA_LISTENER_NAME_EXPIRED_SSL_KEYSTORE_TYPE",
                    "PEM".to_owned(),
                ),
                env(
                    "KAFKA_LISTENER_NAME_EXPIRED_SSL_KEYSTORE_LOCATION",
                    format!("{TLS_DIR}/expired.pem"),
                ),
                env(
                    "KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH",
                    "required".to_owned(),
                ),
                env(
                    "KAFKA_LISTENER_NAME_MTLS_SSL_TRUSTSTORE_TYPE",
                    "PEM".to_owned(),
                ),
                env(
                    "KAFKA_LISTENER_NAME_MTLS_SSL_TRUSTSTORE_LOCATION",
                    format!("{TLS_DIR}/ca.pem"),
                ),
                env("KAFKA_SASL_ENABLED_MECHANISMS", SCRAM_MECHANISM.to_owned()),
                // listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config
                env(
                    "KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
                ),
                env(
                    "KAFKA_AUTHORIZER_CLASS_NAME",
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_owned(),
                ),
                env("KAFKA_SUPER_USERS", "User:ANONYMOUS;User:admin".to_owned()),
                env(
                    "KAFKA_STORAGE_FORMAT_ARGS",
                    format!(
                        "--add-scram {SCRAM_MECHANISM}=[name={PRODUCER_USER},password={producer_password}] \
                         --add-scram {SCRAM_MECHANISM}=[name=admin,password={admin_password}]"
                    ),
                ),
            ],
            ports: vec![
                (sasl_broker, 9095),
                (ssl_port, 9096),
                (expired_port, 9097),
                (mtls_port, 9098),
            ],
            files: vec![
                (
                    format!("{TLS_DIR}/server.pem"),
                    certificates.server.clone().into_bytes(),
                ),
                (
                    format!("{TLS_DIR}/expired.pem"),
                    certificates.expired_server.clone().into_bytes(),
                ),
                (
                    format!("{TLS_DIR}/ca.pem"),
                    certificates.ca.clone().into_bytes(),
                ),
            ],
        };
        let kafka = Kafka::start_behind(plain_proxy, ports, options).await?;
        let operations = &[WRITE, CREATE, DESCRIBE];
        create_topic_prefix_acls(
            &kafka.bootstrap(),
            &[
                TopicPrefixAcl {
                    principal: &format!("User:{PRODUCER_USER}"),
                    prefix: ALLOWED_PREFIX,
                    operations,
                },
                TopicPrefixAcl {
                    principal: &format!("User:CN={MTLS_CLIENT}"),
                    prefix: ALLOWED_PREFIX,
                    operations,
                },
            ],
        )
        .await?;
        Ok(Self {
            kafka,
            certificates,
            sasl_proxy,
            ssl_port,
            expired_port,
            mtls_port,
            producer_password,
        })
    }

    /// The `SASL_SSL` listener's address (through its proxy).
    pub fn sasl_ssl_bootstrap(&self) -> String {
        self.sasl_proxy.addr().to_string()
    }

    /// TCP connections made to the `SASL_SSL` listener so far.
    pub fn sasl_ssl_connections(&self) -> u64 {
        self.sasl_proxy.accepted()
    }

    /// The `SSL` listener's address, by IP (as its certificate names it).
    pub fn ssl_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ssl_port)
    }

    /// The `SSL` listener by a name its certificate does not carry.
    pub fn ssl_bootstrap_by_wrong_name(&self) -> String {
        format!("localhost:{}", self.ssl_port)
    }

    /// The listener whose certificate expired.
    pub fn expired_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.expired_port)
    }

    /// The listener that requires a client certificate signed by the CA.
    pub fn mtls_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.mtls_port)
    }

    /// librdkafka settings for mutual TLS as [`MTLS_CLIENT`].
    pub fn mtls_settings(&self) -> Vec<(String, String)> {
        let c = &self.certificates;
        vec![
            ("security.protocol".into(), "SSL".into()),
            ("ssl.ca.pem".into(), c.ca.clone()),
            ("ssl.certificate.pem".into(), c.client_certificate.clone()),
            ("ssl.key.pem".into(), c.client_key.clone()),
        ]
    }

    /// The `producer` user's password.
    pub fn producer_password(&self) -> &str {
        &self.producer_password
    }

    /// librdkafka settings for `SASL_SSL` as `producer` with `password`,
    /// trusting the broker's CA.
    pub fn sasl_ssl_settings(&self, password: &str) -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanisms".into(), SCRAM_MECHANISM.into()),
            ("sasl.username".into(), PRODUCER_USER.into()),
            ("sasl.password".into(), password.into()),
            ("ssl.ca.pem".into(), self.certificates.ca.clone()),
        ]
    }

    /// librdkafka settings for `SSL`, trusting the CA in `ca_pem`.
    pub fn ssl_settings(ca_pem: &str) -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "SSL".into()),
            ("ssl.ca.pem".into(), ca_pem.into()),
        ]
    }
}
