//! Cluster secrets and PKI (`talos_secrets`), generated locally, once per cluster.
//!
//! Formats follow what Talos itself writes, so a bundle can be moved to and from
//! `talosctl` without conversion:
//! - ECDSA P-256 CAs (etcd, Kubernetes, aggregator): SEC1 keys, PEM label `EC PRIVATE KEY`;
//! - the Talos API CA (`os`): Ed25519, PKCS#8 v1, PEM label `ED25519 PRIVATE KEY`;
//! - the Kubernetes service-account key: RSA-4096, PKCS#1, PEM label `RSA PRIVATE KEY`
//!   (an imported `EC PRIVATE KEY` is accepted too);
//! - tokens `[0-9a-z]{6}.[0-9a-z]{16}`; the cluster id is 32 random bytes, URL-safe
//!   base64; the cluster secret and the secretbox key are 32 random bytes, standard
//!   base64.
//!
//! Nothing here prints a secret: [`ClusterSecrets`] and [`CertificateAndKey`] have
//! redacting `Debug` impls, and parse errors carry field names and locations only.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// Certificate authorities live ten years, like Talos's own (87600h).
const CA_VALIDITY: Duration = Duration::days(3650);
/// The admin client certificate lives one year, like talosctl's.
const ADMIN_VALIDITY: Duration = Duration::days(365);
/// Backdating covers modest clock skew between this machine and the nodes.
const BACKDATE: Duration = Duration::minutes(10);

pub const ED25519_PEM_LABEL: &str = "ED25519 PRIVATE KEY";
const EC_PEM_LABEL: &str = "EC PRIVATE KEY";
const RSA_PEM_LABEL: &str = "RSA PRIVATE KEY";
const PKCS8_PEM_LABEL: &str = "PRIVATE KEY";

/// The Talos role given to the admin client certificate (certificate organization).
pub const ADMIN_ROLE: &str = "os:admin";

/// A PEM certificate and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertificateAndKey {
    pub crt: String,
    pub key: String,
}

impl fmt::Debug for CertificateAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAndKey")
            .field("crt", &format_args!("({} bytes)", self.crt.len()))
            .field("key", &format_args!("(sensitive)"))
            .finish()
    }
}

/// Everything secret about one cluster. Generated once; never regenerated while state
/// holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecrets {
    pub cluster_id: String,
    pub cluster_secret: String,
    pub bootstrap_token: String,
    pub trustd_token: String,
    pub secretbox_encryption_secret: String,
    pub etcd_ca: CertificateAndKey,
    pub kubernetes_ca: CertificateAndKey,
    pub aggregator_ca: CertificateAndKey,
    pub os_ca: CertificateAndKey,
    pub service_account_key: String,
    /// Client certificate with role `os:admin`, signed by the Talos API CA.
    pub admin: CertificateAndKey,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecrets { (sensitive) }")
    }
}

/// Attribute names of `talos_secrets`, all sensitive. PEM values are stored as PEM text.
pub mod attribute {
    pub const CLUSTER_ID: &str = "cluster_id";
    pub const CLUSTER_SECRET: &str = "cluster_secret";
    pub const BOOTSTRAP_TOKEN: &str = "bootstrap_token";
    pub const TRUSTD_TOKEN: &str = "trustd_token";
    pub const SECRETBOX_ENCRYPTION_SECRET: &str = "secretbox_encryption_secret";
    pub const ETCD_CA_CRT: &str = "etcd_ca_crt";
    pub const ETCD_CA_KEY: &str = "etcd_ca_key";
    pub const KUBERNETES_CA_CRT: &str = "kubernetes_ca_crt";
    pub const KUBERNETES_CA_KEY: &str = "kubernetes_ca_key";
    pub const AGGREGATOR_CA_CRT: &str = "aggregator_ca_crt";
    pub const AGGREGATOR_CA_KEY: &str = "aggregator_ca_key";
    pub const OS_CA_CRT: &str = "os_ca_crt";
    pub const OS_CA_KEY: &str = "os_ca_key";
    pub const SERVICE_ACCOUNT_KEY: &str = "service_account_key";
    pub const ADMIN_CRT: &str = "admin_crt";
    pub const ADMIN_KEY: &str = "admin_key";

    pub const ALL: [&str; 16] = [
        CLUSTER_ID,
        CLUSTER_SECRET,
        BOOTSTRAP_TOKEN,
        TRUSTD_TOKEN,
        SECRETBOX_ENCRYPTION_SECRET,
        ETCD_CA_CRT,
        ETCD_CA_KEY,
        KUBERNETES_CA_CRT,
        KUBERNETES_CA_KEY,
        AGGREGATOR_CA_CRT,
        AGGREGATOR_CA_KEY,
        OS_CA_CRT,
        OS_CA_KEY,
        SERVICE_ACCOUNT_KEY,
        ADMIN_CRT,
        ADMIN_KEY,
    ];
}

impl ClusterSecrets {
    /// Generate a complete bundle. The RSA-4096 service-account key dominates the cost
    /// (about a second): call this once per cluster. The key is one generated ahead
    /// ([`crate::key_pool`]) when a run asked for that.
    pub fn generate() -> Result<Self> {
        let service_account_key = crate::key_pool::service_account_key()?;
        Self::generate_with_service_account_key(service_account_key)
    }

    /// Generate everything except the service-account key, which is given (PEM).
    pub fn generate_with_service_account_key(service_account_key: String) -> Result<Self> {
        let etcd_ca = generate_ecdsa_ca(DnType::OrganizationName, "etcd")?;
        let kubernetes_ca = generate_ecdsa_ca(DnType::OrganizationName, "kubernetes")?;
        let aggregator_ca = generate_ecdsa_ca(DnType::CommonName, "front-proxy")?;
        let os_ca = generate_talos_ca()?;
        let admin = issue_admin_certificate(&os_ca)?;
        Ok(ClusterSecrets {
            cluster_id: URL_SAFE.encode(random_bytes::<32>()?),
            cluster_secret: STANDARD.encode(random_bytes::<32>()?),
            bootstrap_token: generate_token()?,
            trustd_token: generate_token()?,
            secretbox_encryption_secret: STANDARD.encode(random_bytes::<32>()?),
            etcd_ca,
            kubernetes_ca,
            aggregator_ca,
            os_ca,
            service_account_key,
            admin,
        })
    }

    /// Check formats (tokens, base64 lengths, PEM labels) without printing any value.
    pub fn validate(&self) -> Result<()> {
        for (name, token) in [
            (attribute::BOOTSTRAP_TOKEN, &self.bootstrap_token),
            (attribute::TRUSTD_TOKEN, &self.trustd_token),
        ] {
            if !is_token(token) {
                return Err(Error::InvalidSecrets(format!(
                    "`{name}` must match [0-9a-z]{{6}}.[0-9a-z]{{16}}"
                )));
            }
        }
        let secretbox = STANDARD
            .decode(&self.secretbox_encryption_secret)
            .map_err(|_| {
                Error::InvalidSecrets(format!(
                    "`{}` is not base64",
                    attribute::SECRETBOX_ENCRYPTION_SECRET
                ))
            })?;
        if secretbox.len() != 32 {
            return Err(Error::InvalidSecrets(format!(
                "`{}` must decode to 32 bytes, not {}",
                attribute::SECRETBOX_ENCRYPTION_SECRET,
                secretbox.len()
            )));
        }
        for (name, value) in [
            (attribute::CLUSTER_ID, &self.cluster_id),
            (attribute::CLUSTER_SECRET, &self.cluster_secret),
        ] {
            if value.is_empty() {
                return Err(Error::InvalidSecrets(format!("`{name}` is empty")));
            }
        }
        let checks: [(&str, &str, &[&str]); 11] = [
            (attribute::ETCD_CA_CRT, &self.etcd_ca.crt, &["CERTIFICATE"]),
            (attribute::ETCD_CA_KEY, &self.etcd_ca.key, &[EC_PEM_LABEL]),
            (
                attribute::KUBERNETES_CA_CRT,
                &self.kubernetes_ca.crt,
                &["CERTIFICATE"],
            ),
            (
                attribute::KUBERNETES_CA_KEY,
                &self.kubernetes_ca.key,
                &[EC_PEM_LABEL],
            ),
            (
                attribute::AGGREGATOR_CA_CRT,
                &self.aggregator_ca.crt,
                &["CERTIFICATE"],
            ),
            (
                attribute::AGGREGATOR_CA_KEY,
                &self.aggregator_ca.key,
                &[EC_PEM_LABEL],
            ),
            (attribute::OS_CA_CRT, &self.os_ca.crt, &["CERTIFICATE"]),
            (attribute::OS_CA_KEY, &self.os_ca.key, &[ED25519_PEM_LABEL]),
            (
                attribute::SERVICE_ACCOUNT_KEY,
                &self.service_account_key,
                &[RSA_PEM_LABEL, EC_PEM_LABEL],
            ),
            (attribute::ADMIN_CRT, &self.admin.crt, &["CERTIFICATE"]),
            (
                attribute::ADMIN_KEY,
                &self.admin.key,
                &[ED25519_PEM_LABEL, PKCS8_PEM_LABEL],
            ),
        ];
        for (name, value, labels) in checks {
            let block = pem::parse(value)
                .map_err(|_| Error::InvalidSecrets(format!("`{name}` is not PEM")))?;
            if !labels.contains(&block.tag()) {
                return Err(Error::InvalidSecrets(format!(
                    "`{name}` has PEM label `{}`, expected {}",
                    block.tag(),
                    labels.join(" or ")
                )));
            }
        }
        Ok(())
    }

    /// The `talos_secrets` attributes (all sensitive).
    pub fn to_attributes(&self) -> infraflux_provider::Attributes {
        let value = json!({
            attribute::CLUSTER_ID: self.cluster_id,
            attribute::CLUSTER_SECRET: self.cluster_secret,
            attribute::BOOTSTRAP_TOKEN: self.bootstrap_token,
            attribute::TRUSTD_TOKEN: self.trustd_token,
            attribute::SECRETBOX_ENCRYPTION_SECRET: self.secretbox_encryption_secret,
            attribute::ETCD_CA_CRT: self.etcd_ca.crt,
            attribute::ETCD_CA_KEY: self.etcd_ca.key,
            attribute::KUBERNETES_CA_CRT: self.kubernetes_ca.crt,
            attribute::KUBERNETES_CA_KEY: self.kubernetes_ca.key,
            attribute::AGGREGATOR_CA_CRT: self.aggregator_ca.crt,
            attribute::AGGREGATOR_CA_KEY: self.aggregator_ca.key,
            attribute::OS_CA_CRT: self.os_ca.crt,
            attribute::OS_CA_KEY: self.os_ca.key,
            attribute::SERVICE_ACCOUNT_KEY: self.service_account_key,
            attribute::ADMIN_CRT: self.admin.crt,
            attribute::ADMIN_KEY: self.admin.key,
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!("json! of an object literal is an object"),
        }
    }

    /// Read a bundle from `talos_secrets` attributes (or any map with the same keys).
    pub fn from_attributes(attributes: &serde_json::Map<String, Value>) -> Result<Self> {
        let get = |name: &str| -> Result<String> {
            attributes
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::InvalidSecrets(format!("`{name}` is missing")))
        };
        let secrets = ClusterSecrets {
            cluster_id: get(attribute::CLUSTER_ID)?,
            cluster_secret: get(attribute::CLUSTER_SECRET)?,
            bootstrap_token: get(attribute::BOOTSTRAP_TOKEN)?,
            trustd_token: get(attribute::TRUSTD_TOKEN)?,
            secretbox_encryption_secret: get(attribute::SECRETBOX_ENCRYPTION_SECRET)?,
            etcd_ca: CertificateAndKey {
                crt: get(attribute::ETCD_CA_CRT)?,
                key: get(attribute::ETCD_CA_KEY)?,
            },
            kubernetes_ca: CertificateAndKey {
                crt: get(attribute::KUBERNETES_CA_CRT)?,
                key: get(attribute::KUBERNETES_CA_KEY)?,
            },
            aggregator_ca: CertificateAndKey {
                crt: get(attribute::AGGREGATOR_CA_CRT)?,
                key: get(attribute::AGGREGATOR_CA_KEY)?,
            },
            os_ca: CertificateAndKey {
                crt: get(attribute::OS_CA_CRT)?,
                key: get(attribute::OS_CA_KEY)?,
            },
            service_account_key: get(attribute::SERVICE_ACCOUNT_KEY)?,
            admin: CertificateAndKey {
                crt: get(attribute::ADMIN_CRT)?,
                key: get(attribute::ADMIN_KEY)?,
            },
        };
        secrets.validate()?;
        Ok(secrets)
    }

    /// Import a talosctl `secrets.yaml` (`talosctl gen secrets`): see
    /// [`TalosctlSecrets`] for the accepted layout. A fresh admin certificate is issued
    /// from the imported Talos API CA, since `secrets.yaml` carries none.
    pub fn from_talosctl_yaml(text: &str) -> Result<Self> {
        let raw: TalosctlSecrets = serde_yaml::from_str(text).map_err(|error| {
            // serde_yaml messages can quote the offending value: keep the location only.
            let location = error
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            Error::InvalidSecrets(format!(
                "secrets.yaml does not have the talosctl layout{location}"
            ))
        })?;
        let decode = |field: &str, value: &str| -> Result<String> {
            let bytes = STANDARD.decode(value.trim()).map_err(|_| {
                Error::InvalidSecrets(format!("secrets.yaml `{field}` is not base64"))
            })?;
            String::from_utf8(bytes)
                .map_err(|_| Error::InvalidSecrets(format!("secrets.yaml `{field}` is not PEM")))
        };
        let pair = |field: &str, value: &TalosctlPair| -> Result<CertificateAndKey> {
            Ok(CertificateAndKey {
                crt: decode(&format!("{field}.crt"), &value.crt)?,
                key: decode(&format!("{field}.key"), &value.key)?,
            })
        };
        let os_ca = pair("certs.os", &raw.certs.os)?;
        let admin = issue_admin_certificate(&os_ca)?;
        let secrets = ClusterSecrets {
            cluster_id: raw.cluster.id,
            cluster_secret: raw.cluster.secret,
            bootstrap_token: raw.secrets.bootstraptoken,
            trustd_token: raw.trustdinfo.token,
            secretbox_encryption_secret: raw.secrets.secretboxencryptionsecret.ok_or_else(
                || {
                    Error::InvalidSecrets(
                        "secrets.yaml has no `secrets.secretboxencryptionsecret` (bundles from Talos before 1.3 are not supported)".into(),
                    )
                },
            )?,
            etcd_ca: pair("certs.etcd", &raw.certs.etcd)?,
            kubernetes_ca: pair("certs.k8s", &raw.certs.k8s)?,
            aggregator_ca: pair("certs.k8saggregator", &raw.certs.k8saggregator)?,
            os_ca,
            service_account_key: decode("certs.k8sserviceaccount.key", &raw.certs.k8sserviceaccount.key)?,
            admin,
        };
        secrets.validate()?;
        Ok(secrets)
    }

    /// Export in talosctl's `secrets.yaml` layout (for `talosctl gen config --with-secrets`).
    pub fn to_talosctl_yaml(&self) -> String {
        let pair = |p: &CertificateAndKey| TalosctlPair {
            crt: STANDARD.encode(&p.crt),
            key: STANDARD.encode(&p.key),
        };
        let raw = TalosctlSecrets {
            cluster: TalosctlCluster {
                id: self.cluster_id.clone(),
                secret: self.cluster_secret.clone(),
            },
            secrets: TalosctlSecretValues {
                bootstraptoken: self.bootstrap_token.clone(),
                secretboxencryptionsecret: Some(self.secretbox_encryption_secret.clone()),
                aescbcencryptionsecret: None,
            },
            trustdinfo: TalosctlTrustd {
                token: self.trustd_token.clone(),
            },
            certs: TalosctlCerts {
                etcd: pair(&self.etcd_ca),
                k8s: pair(&self.kubernetes_ca),
                k8saggregator: pair(&self.aggregator_ca),
                k8sserviceaccount: TalosctlKey {
                    key: STANDARD.encode(&self.service_account_key),
                },
                os: pair(&self.os_ca),
            },
        };
        serde_yaml::to_string(&raw).unwrap_or_default()
    }

    /// Bootstrap token split into id and secret.
    pub fn bootstrap_token_parts(&self) -> (&str, &str) {
        self.bootstrap_token
            .split_once('.')
            .unwrap_or((&self.bootstrap_token, ""))
    }
}

/// The talosctl `secrets.yaml` layout accepted by [`ClusterSecrets::from_talosctl_yaml`]:
///
/// ```yaml
/// cluster: {id: <base64url>, secret: <base64>}
/// secrets:
///   bootstraptoken: abcdef.0123456789abcdef
///   secretboxencryptionsecret: <base64 of 32 bytes>
///   aescbcencryptionsecret: <ignored when present>
/// trustdinfo: {token: abcdef.0123456789abcdef}
/// certs:          # every crt/key is the base64 of a PEM document
///   etcd: {crt: ..., key: ...}
///   k8s: {crt: ..., key: ...}
///   k8saggregator: {crt: ..., key: ...}
///   k8sserviceaccount: {key: ...}
///   os: {crt: ..., key: ...}
/// ```
#[derive(Serialize, Deserialize)]
pub struct TalosctlSecrets {
    cluster: TalosctlCluster,
    secrets: TalosctlSecretValues,
    trustdinfo: TalosctlTrustd,
    certs: TalosctlCerts,
}

#[derive(Serialize, Deserialize)]
struct TalosctlCluster {
    id: String,
    secret: String,
}

#[derive(Serialize, Deserialize)]
struct TalosctlSecretValues {
    bootstraptoken: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secretboxencryptionsecret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aescbcencryptionsecret: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TalosctlTrustd {
    token: String,
}

#[derive(Serialize, Deserialize)]
struct TalosctlCerts {
    etcd: TalosctlPair,
    k8s: TalosctlPair,
    k8saggregator: TalosctlPair,
    k8sserviceaccount: TalosctlKey,
    os: TalosctlPair,
}

#[derive(Serialize, Deserialize)]
struct TalosctlPair {
    crt: String,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct TalosctlKey {
    key: String,
}

// ---- generation -------------------------------------------------------------------

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::generate("random bytes", e))?;
    Ok(bytes)
}

fn random_chars(count: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(count);
    while out.len() < count {
        for byte in random_bytes::<32>()? {
            // 252 = 7 * 36: reject the tail so every character is equally likely.
            if byte < 252 && out.len() < count {
                out.push(ALPHABET[(byte % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A token in the Kubernetes bootstrap-token shape `[0-9a-z]{6}.[0-9a-z]{16}`.
pub fn generate_token() -> Result<String> {
    Ok(format!("{}.{}", random_chars(6)?, random_chars(16)?))
}

pub fn is_token(value: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    value
        .split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// RSA-4096, PKCS#1 PEM, as Talos generates it since 1.7 (`UseRSAServiceAccountKey`).
pub fn generate_service_account_key() -> Result<String> {
    let fail = |e: openssl::error::ErrorStack| Error::generate("service-account key", e);
    let key = rsa_key_from_random_primes(SERVICE_ACCOUNT_KEY_BITS).map_err(fail)?;
    let pem = key.private_key_to_pem().map_err(fail)?;
    String::from_utf8(pem).map_err(|e| Error::generate("service-account key", e))
}

const SERVICE_ACCOUNT_KEY_BITS: u32 = 4096;

/// An RSA key with public exponent 65537 made from two random primes of half its size,
/// as Go's `crypto/rsa.GenerateKey` (which Talos uses for this key) makes it, every
/// number from OpenSSL's `BN_generate_prime_ex` and bignum arithmetic. OpenSSL 3's own
/// `RSA_generate_key_ex` takes the FIPS 186-4 auxiliary-prime route for 2-prime keys of
/// 2048 bits and more, with a constant-time GCD per candidate: about 1.1 s per 4096-bit
/// key here, against about 0.65 s this way (perf on `lab run`: 80% of its CPU was that
/// route). The checks are FIPS 186-4's for probable primes (B.3.3): `|p - q| > 2^(nlen/2
/// - 100)` and `d > 2^(nlen/2)`; then OpenSSL's `RSA_check_key` on the result.
fn rsa_key_from_random_primes(
    bits: u32,
) -> std::result::Result<openssl::rsa::Rsa<openssl::pkey::Private>, openssl::error::ErrorStack> {
    use openssl::bn::{BigNum, BigNumContext, BigNumRef};
    let half = bits as i32 / 2;
    let mut context = BigNumContext::new()?;
    let modulo = |a: &BigNumRef, m: &BigNumRef, context: &mut BigNumContext| {
        let mut rest = BigNum::new()?;
        rest.nnmod(a, m, context)?;
        Ok::<_, openssl::error::ErrorStack>(rest)
    };
    let e = BigNum::from_u32(65537)?;
    let one = BigNum::from_u32(1)?;
    let mut min_distance = BigNum::new()?;
    min_distance.set_bit(half - 100)?;
    let mut min_d = BigNum::new()?;
    min_d.set_bit(half)?;
    loop {
        // Top two bits set (BN_RAND_TOP_TWO): p * q has exactly `bits` bits.
        let mut p = BigNum::new()?;
        p.generate_prime(half, false, None, None)?;
        let mut q = BigNum::new()?;
        q.generate_prime(half, false, None, None)?;
        let mut distance = BigNum::new()?;
        distance.checked_sub(&p, &q)?;
        distance.set_negative(false);
        if distance <= min_distance {
            continue;
        }
        // Keep OpenSSL's convention p > q (iqmp is q⁻¹ mod p).
        if p < q {
            std::mem::swap(&mut p, &mut q);
        }
        let mut p1 = BigNum::new()?;
        p1.checked_sub(&p, &one)?;
        let mut q1 = BigNum::new()?;
        q1.checked_sub(&q, &one)?;
        // e is prime: it is coprime to p - 1 unless it divides it.
        if modulo(&p1, &e, &mut context)?.num_bits() == 0
            || modulo(&q1, &e, &mut context)?.num_bits() == 0
        {
            continue;
        }
        // d = e⁻¹ mod lcm(p - 1, q - 1).
        let mut gcd = BigNum::new()?;
        gcd.gcd(&p1, &q1, &mut context)?;
        let mut product = BigNum::new()?;
        product.checked_mul(&p1, &q1, &mut context)?;
        let mut lcm = BigNum::new()?;
        lcm.checked_div(&product, &gcd, &mut context)?;
        let mut d = BigNum::new()?;
        d.mod_inverse(&e, &lcm, &mut context)?;
        if d <= min_d {
            continue;
        }
        let mut n = BigNum::new()?;
        n.checked_mul(&p, &q, &mut context)?;
        let dmp1 = modulo(&d, &p1, &mut context)?;
        let dmq1 = modulo(&d, &q1, &mut context)?;
        let mut iqmp = BigNum::new()?;
        iqmp.mod_inverse(&q, &p, &mut context)?;
        let key = openssl::rsa::Rsa::from_private_components(
            n,
            BigNum::from_u32(65537)?,
            d,
            p,
            q,
            dmp1,
            dmq1,
            iqmp,
        )?;
        if key.check_key()? {
            return Ok(key);
        }
    }
}

fn random_serial() -> Result<SerialNumber> {
    let mut bytes = random_bytes::<16>()?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(dn_type: DnType, name: &str) -> Result<CertificateParams> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(dn_type, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

fn generate_ecdsa_ca(dn_type: DnType, name: &'static str) -> Result<CertificateAndKey> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| Error::generate(name, e))?;
    let crt = ca_params(dn_type, name)?
        .self_signed(&key)
        .map_err(|e| Error::generate(name, e))?;
    Ok(CertificateAndKey {
        crt: crt.pem(),
        key: ecdsa_pkcs8_to_sec1_pem(key.serialized_der())?,
    })
}

fn generate_talos_ca() -> Result<CertificateAndKey> {
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| Error::generate("talos CA", e))?;
    let crt = ca_params(DnType::OrganizationName, "talos")?
        .self_signed(&key)
        .map_err(|e| Error::generate("talos CA", e))?;
    Ok(CertificateAndKey {
        crt: crt.pem(),
        key: ed25519_pem(key.serialized_der())?,
    })
}

/// Issue the `os:admin` client certificate from the Talos API CA.
pub fn issue_admin_certificate(os_ca: &CertificateAndKey) -> Result<CertificateAndKey> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, ADMIN_ROLE);
    params
        .distinguished_name
        .push(DnType::CommonName, "infraflux");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue_ed25519_leaf(params, os_ca, "admin key", "admin certificate")
}

/// Issue a Talos API server certificate for the given IP addresses (used by the fake
/// node; real nodes issue their own).
pub fn issue_server_certificate(
    os_ca: &CertificateAndKey,
    ips: &[std::net::IpAddr],
) -> Result<CertificateAndKey> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "apid");
    params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue_ed25519_leaf(params, os_ca, "server key", "server certificate")
}

/// Sign an Ed25519 leaf certificate with the Talos API CA: the validity, serial and key
/// usage every Talos API leaf shares are set here; the labels name it in errors.
fn issue_ed25519_leaf(
    mut params: CertificateParams,
    os_ca: &CertificateAndKey,
    key_label: &'static str,
    certificate_label: &'static str,
) -> Result<CertificateAndKey> {
    let now = OffsetDateTime::now_utc();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - BACKDATE;
    params.not_after = now + ADMIN_VALIDITY;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| Error::generate(key_label, e))?;
    let crt = sign_with_ca(params, &key, os_ca, certificate_label)?;
    Ok(CertificateAndKey {
        crt,
        key: ed25519_pem(key.serialized_der())?,
    })
}

/// Issue a Kubernetes client certificate (ECDSA P-256) from the Kubernetes CA, as Talos
/// does for the admin kubeconfig (used by the fake node).
pub fn issue_kubernetes_client_certificate(
    kubernetes_ca: &CertificateAndKey,
    organization: &str,
    common_name: &str,
) -> Result<CertificateAndKey> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + ADMIN_VALIDITY;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::generate("kubernetes client key", e))?;
    let crt = sign_with_ca(params, &key, kubernetes_ca, "kubernetes client certificate")?;
    Ok(CertificateAndKey {
        crt,
        key: ecdsa_pkcs8_to_sec1_pem(key.serialized_der())?,
    })
}

/// Issue a Kubernetes API server certificate (ECDSA P-256, SEC1 key) from the Kubernetes
/// CA for the given addresses and names, as the API server of a bootstrapped cluster
/// serves (used by the fake node's bootstrap event, for the engine's lab).
pub fn issue_kubernetes_server_certificate(
    kubernetes_ca: &CertificateAndKey,
    ips: &[std::net::IpAddr],
    names: &[&str],
) -> Result<CertificateAndKey> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    for name in names {
        let name = (*name)
            .try_into()
            .map_err(|e| Error::generate("kubernetes server certificate", e))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + ADMIN_VALIDITY;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::generate("kubernetes server key", e))?;
    let crt = sign_with_ca(params, &key, kubernetes_ca, "kubernetes server certificate")?;
    Ok(CertificateAndKey {
        crt,
        key: ecdsa_pkcs8_to_sec1_pem(key.serialized_der())?,
    })
}

fn sign_with_ca(
    params: CertificateParams,
    key: &KeyPair,
    ca: &CertificateAndKey,
    what: &'static str,
) -> Result<String> {
    let ca_key = load_key_pair(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.crt, ca_key)
        .map_err(|_| Error::InvalidSecrets("the CA certificate cannot be parsed".into()))?;
    let crt = params
        .signed_by(key, &issuer)
        .map_err(|e| Error::generate(what, e))?;
    Ok(crt.pem())
}

/// Load a CA private key in any of the PEM forms Talos writes.
pub(crate) fn load_key_pair(key_pem: &str) -> Result<KeyPair> {
    let block =
        pem::parse(key_pem).map_err(|_| Error::InvalidSecrets("a CA key is not PEM".into()))?;
    let bad = || Error::InvalidSecrets(format!("a `{}` key cannot be loaded", block.tag()));
    let pkcs8 = match block.tag() {
        ED25519_PEM_LABEL | PKCS8_PEM_LABEL => block.contents().to_vec(),
        EC_PEM_LABEL => p256::SecretKey::from_sec1_der(block.contents())
            .map_err(|_| bad())?
            .to_pkcs8_der()
            .map_err(|_| bad())?
            .as_bytes()
            .to_vec(),
        _ => return Err(bad()),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| bad())
}

fn ecdsa_pkcs8_to_sec1_pem(pkcs8: &[u8]) -> Result<String> {
    let key = p256::SecretKey::from_pkcs8_der(pkcs8)
        .map_err(|e| Error::generate("ECDSA key encoding", e))?;
    let pem = key
        .to_sec1_pem(LineEnding::LF)
        .map_err(|e| Error::generate("ECDSA key encoding", e))?;
    Ok(pem.to_string())
}

/// Ed25519 key as Go writes it: PKCS#8 v1 (no public key), label `ED25519 PRIVATE KEY`.
fn ed25519_pem(pkcs8: &[u8]) -> Result<String> {
    // ring emits PKCS#8 v2: SEQUENCE { INTEGER 1, AlgorithmIdentifier(Ed25519),
    // OCTET STRING { OCTET STRING seed }, [1] public key }; Go writes v1 (INTEGER 0, no
    // public key). Both start with the same fixed layout up to the 32-byte seed.
    const ALGORITHM_AND_SEED_HEADER: [u8; 11] = [
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let well_formed = pkcs8.len() >= 48
        && pkcs8[0] == 0x30
        && usize::from(pkcs8[1]) == pkcs8.len() - 2
        && pkcs8[2..4] == [0x02, 0x01]
        && pkcs8[4] <= 1
        && pkcs8[5..16] == ALGORITHM_AND_SEED_HEADER;
    if !well_formed {
        return Err(Error::InvalidSecrets(
            "unexpected Ed25519 PKCS#8 encoding".into(),
        ));
    }
    let seed = &pkcs8[16..48];
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Ok(pem::encode_config(
        &pem::Pem::new(ED25519_PEM_LABEL, v1),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One generated bundle for this module's tests (RSA-4096 is slow).
    pub(crate) fn bundle() -> &'static ClusterSecrets {
        crate::test_support::secrets()
    }

    #[test]
    fn tokens_have_the_kubernetes_bootstrap_token_shape() {
        for _ in 0..50 {
            let token = generate_token().unwrap();
            assert!(is_token(&token), "{token}");
        }
        assert!(!is_token("ABCDEF.0123456789abcdef"));
        assert!(!is_token("abcdef0123456789abcdef"));
        assert!(!is_token("abcde.0123456789abcdef"));
    }

    #[test]
    fn generated_bundle_has_the_formats_talos_expects() {
        let s = bundle();
        s.validate().unwrap();
        assert!(is_token(&s.bootstrap_token) && is_token(&s.trustd_token));
        assert_ne!(s.bootstrap_token, s.trustd_token);
        assert_eq!(URL_SAFE.decode(&s.cluster_id).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(&s.cluster_secret).unwrap().len(), 32);
        assert_eq!(
            STANDARD
                .decode(&s.secretbox_encryption_secret)
                .unwrap()
                .len(),
            32
        );
        assert!(
            s.os_ca
                .key
                .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
        );
        assert!(
            s.etcd_ca
                .key
                .starts_with("-----BEGIN EC PRIVATE KEY-----\n")
        );
        assert!(
            s.service_account_key
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        // The Ed25519 key is PKCS#8 v1, as Go's x509.MarshalPKCS8PrivateKey writes it.
        let der = pem::parse(&s.os_ca.key).unwrap();
        assert_eq!(der.contents().len(), 48);
        // The keys load back and the CAs are distinct.
        for key in [
            &s.etcd_ca.key,
            &s.kubernetes_ca.key,
            &s.aggregator_ca.key,
            &s.os_ca.key,
        ] {
            load_key_pair(key).unwrap();
        }
        assert_ne!(s.etcd_ca.crt, s.kubernetes_ca.crt);
    }

    #[test]
    fn service_account_key_is_rsa_4096() {
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(&bundle().service_account_key).unwrap();
        assert_eq!(key.size() * 8, 4096);
    }

    /// The key is judged by another implementation (the pure-Rust `rsa` crate): valid
    /// components, two primes, e = 65537, FIPS 186-4's distance between the primes,
    /// and a signature it makes verifies with the public half.
    #[test]
    fn a_generated_service_account_key_is_a_valid_two_prime_key_to_another_implementation() {
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        use rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
        let pem = generate_service_account_key().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).unwrap();
        key.validate().unwrap();
        assert_eq!(key.size() * 8, 4096);
        assert_eq!(key.e(), &rsa::BigUint::from(65537u32));
        let primes = key.primes();
        assert_eq!(primes.len(), 2);
        assert_eq!(primes[0].bits() + primes[1].bits(), 4096);
        let distance = if primes[0] > primes[1] {
            &primes[0] - &primes[1]
        } else {
            &primes[1] - &primes[0]
        };
        assert!(distance.bits() > 2048 - 100);
        use sha2::{Digest as _, Sha256};
        let digest = Sha256::digest(b"a service account token");
        let signature = key
            .sign(rsa::Pkcs1v15Sign::new_unprefixed(), &digest)
            .unwrap();
        key.to_public_key()
            .verify(rsa::Pkcs1v15Sign::new_unprefixed(), &digest, &signature)
            .unwrap();
    }

    #[test]
    fn admin_certificate_chains_to_the_talos_ca_with_the_admin_role() {
        let s = bundle();
        let ca = pem::parse(&s.os_ca.crt).unwrap();
        let admin = pem::parse(&s.admin.crt).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(ca.contents()).unwrap();
        let (_, admin) = x509_parser::parse_x509_certificate(admin.contents()).unwrap();
        assert_eq!(admin.issuer(), ca.subject());
        admin.verify_signature(Some(ca.public_key())).unwrap();
        let organization: Vec<_> = admin
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_string())
            .collect();
        assert_eq!(organization, vec![ADMIN_ROLE.to_string()]);
        assert!(ca.is_ca());
        assert!(!admin.is_ca());
    }

    #[test]
    fn attributes_round_trip_and_missing_fields_are_named_without_values() {
        let s = bundle();
        let attributes = s.to_attributes();
        assert_eq!(attributes.len(), attribute::ALL.len());
        assert_eq!(&ClusterSecrets::from_attributes(&attributes).unwrap(), s);
        let mut broken = attributes.clone();
        broken.remove(attribute::OS_CA_KEY);
        let error = ClusterSecrets::from_attributes(&broken)
            .unwrap_err()
            .to_string();
        assert!(error.contains("os_ca_key"), "{error}");
        let mut broken = attributes;
        broken.insert(attribute::BOOTSTRAP_TOKEN.into(), json!("NOT-A-TOKEN-zzzz"));
        let error = ClusterSecrets::from_attributes(&broken)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("NOT-A-TOKEN"), "{error}");
    }

    #[test]
    fn talosctl_secrets_yaml_round_trips_with_a_fresh_admin_certificate() {
        let s = bundle();
        let yaml = s.to_talosctl_yaml();
        assert!(yaml.contains("bootstraptoken:") && yaml.contains("k8sserviceaccount:"));
        let imported = ClusterSecrets::from_talosctl_yaml(&yaml).unwrap();
        assert_eq!(imported.os_ca, s.os_ca);
        assert_eq!(imported.service_account_key, s.service_account_key);
        assert_eq!(imported.bootstrap_token, s.bootstrap_token);
        assert_ne!(imported.admin, s.admin);
    }

    #[test]
    fn talosctl_import_accepts_go_style_keys_and_hides_values_in_errors() {
        // A Go-written Ed25519 CA key is PKCS#8 v1; we write the same, so re-encode and load.
        let s = bundle();
        let key = load_key_pair(&s.os_ca.key).unwrap();
        assert_eq!(key.algorithm(), &PKCS_ED25519);
        let error = ClusterSecrets::from_talosctl_yaml("cluster: {id: SECRETVALUE}\n")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("SECRETVALUE"), "{error}");
    }

    #[test]
    fn debug_output_never_contains_key_material() {
        let s = bundle();
        let debug = format!("{s:?} {:?}", s.os_ca);
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(!debug.contains(&s.bootstrap_token));
    }
}
