//! [`BuildEnv`]: what a node adds to the builds it runs so they work behind
//! a proxy or a private certificate authority (schools, offices, some home
//! routers).
//!
//! - **Extra CA certificates** (`--build-ca FILE`): combined with a base
//!   bundle (the machine's own system bundle when there is one, because pip's
//!   `PIP_CERT` replaces its bundle rather than adding to it) into one PEM file
//!   that enters the build context. Every stage of a Dockerfile Kraken wrote
//!   copies it in and points npm (`NODE_EXTRA_CA_CERTS`), pip (`PIP_CERT`),
//!   OpenSSL and uv (`SSL_CERT_FILE`) and requests (`REQUESTS_CA_BUNDLE`) at it
//!   through `ARG`s, which RUN steps see as environment variables while the
//!   running app does not.
//! - **Proxy variables**: `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, `FTP_PROXY`,
//!   `ALL_PROXY` (and their lower-case forms) of the agent's environment are
//!   passed as build arguments, Docker's predefined ones, to every build, an
//!   app's own Dockerfile included. They are never shown (a proxy URL may hold a
//!   password).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BuildPlan;

/// The name of the CA bundle inside the build context.
pub const CA_CONTEXT_NAME: &str = ".kraken-build-ca.pem";

/// Where the CA bundle is put in the image while it is built.
pub const CA_IMAGE_PATH: &str = "/etc/kraken/build-ca.pem";

/// The environment variables passed from the agent to builds.
pub const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ftp_proxy",
    "all_proxy",
];

/// The variables that point the tools of a build at the CA bundle.
const CA_VARIABLES: &[&str] = &["NODE_EXTRA_CA_CERTS", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"];

/// Why the node's build settings could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildEnvError {
    /// A CA file could not be read.
    #[error(
        "cannot read the build CA file {path}: {source}; give the path of a PEM file of CA certificates"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CA file holds no PEM certificate.
    #[error(
        "the build CA file {path} holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block); \
         give your network's CA certificate in PEM form, e.g. /etc/ssl/certs/ca-certificates.crt \
         or the .crt file your network's administrator hands out"
    )]
    NotPem {
        /// The file.
        path: PathBuf,
    },
}

/// What a node adds to its builds: a CA bundle and proxy variables.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BuildEnv {
    ca_bundle: Option<Arc<Vec<u8>>>,
    ca_sources: Vec<PathBuf>,
    proxy: BTreeMap<String, String>,
}

impl std::fmt::Debug for BuildEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Proxy values are left out: they may hold a password.
        f.debug_struct("BuildEnv")
            .field("ca_sources", &self.ca_sources)
            .field("proxy_variables", &self.proxy.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BuildEnv {
    /// Nothing added to builds.
    pub fn none() -> Self {
        Self::default()
    }

    /// The settings of an agent: the CA files `ca_files` (combined with the
    /// machine's system bundle, when there is one) and the proxy variables of
    /// the agent's own environment.
    ///
    /// # Errors
    /// [`BuildEnvError`] when a CA file cannot be read or holds no certificate.
    pub fn load(ca_files: &[PathBuf]) -> Result<Self, BuildEnvError> {
        let base = openssl_probe::probe().cert_file.filter(|p| p.is_file());
        Ok(Self::with_ca_files(ca_files, base.as_deref())?.with_proxy(std::env::vars()))
    }

    /// CA files `ca_files` combined with the bundle `base` (when given and
    /// there are CA files; a file that is the base itself is not repeated).
    ///
    /// # Errors
    /// [`BuildEnvError`] when a file cannot be read or holds no certificate.
    pub fn with_ca_files(ca_files: &[PathBuf], base: Option<&Path>) -> Result<Self, BuildEnvError> {
        let mut env = Self::none();
        if ca_files.is_empty() {
            return Ok(env);
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| BuildEnvError::Read { path: path.to_path_buf(), source })
        };
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let mut bundle = Vec::new();
        for path in ca_files {
            let pem = read(path)?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(BuildEnvError::NotPem { path: path.clone() });
            }
            push_pem(&mut bundle, &pem);
            env.ca_sources.push(path.clone());
        }
        if let Some(base) = base.filter(|b| !ca_files.iter().any(|f| same(f, b))) {
            // Best effort: without a base bundle the given certificates alone
            // are still trusted by npm, which adds them to its own.
            if let Ok(pem) = std::fs::read(base) {
                push_pem(&mut bundle, &pem);
                env.ca_sources.push(base.to_path_buf());
            }
        }
        env.ca_bundle = Some(Arc::new(bundle));
        Ok(env)
    }

    /// The same settings with the proxy variables found among `vars` (the
    /// names of [`PROXY_VARIABLES`], non-empty values).
    #[must_use]
    pub fn with_proxy(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.proxy = vars
            .into_iter()
            .filter(|(k, v)| PROXY_VARIABLES.contains(&k.as_str()) && !v.trim().is_empty())
            .collect();
        self
    }

    /// Whether builds get a CA bundle.
    pub fn has_ca(&self) -> bool {
        self.ca_bundle.is_some()
    }

    /// The files the CA bundle was made from.
    pub fn ca_sources(&self) -> &[PathBuf] {
        &self.ca_sources
    }

    /// The proxy variables passed to builds.
    pub fn proxy(&self) -> &BTreeMap<String, String> {
        &self.proxy
    }

    /// Adds these settings to `plan`: the proxy variables as build arguments,
    /// and, unless the Dockerfile is the app's own, the CA bundle in the
    /// context and in every stage.
    pub fn apply(&self, plan: &mut BuildPlan) {
        plan.build_args.extend(self.proxy.iter().map(|(k, v)| (k.clone(), v.clone())));
        let Some(bundle) = &self.ca_bundle else { return };
        if plan.verbatim {
            return;
        }
        plan.files.insert(CA_CONTEXT_NAME.to_string(), bundle.as_ref().clone());
        let mut trust = super::copy_instruction(&[CA_CONTEXT_NAME], CA_IMAGE_PATH);
        for var in CA_VARIABLES {
            trust.push_str(&format!("\nARG {var}={CA_IMAGE_PATH}"));
        }
        let mut out = String::with_capacity(plan.dockerfile.len() + trust.len() * 2);
        for line in plan.dockerfile.lines() {
            out.push_str(line);
            out.push('\n');
            if line.trim_start().get(..5).is_some_and(|w| w.eq_ignore_ascii_case("FROM ")) {
                out.push_str(&trust);
                out.push('\n');
            }
        }
        plan.dockerfile = out;
    }
}

/// Appends `pem` to `bundle`, on a line of its own.
fn push_pem(bundle: &mut Vec<u8>, pem: &[u8]) {
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(pem);
    if !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Step;
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

    fn plan(dockerfile: &str) -> BuildPlan {
        BuildPlan::new("node", Step::new("x", "y"), "/tmp", dockerfile)
    }

    #[test]
    fn ca_is_combined_with_the_base_bundle_and_trusted_in_every_stage() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, base) = (dir.path().join("ca.crt"), dir.path().join("system.crt"));
        std::fs::write(&ca, CERT).unwrap();
        std::fs::write(&base, "-----BEGIN CERTIFICATE-----\nSYSTEM\n-----END CERTIFICATE-----\n").unwrap();
        let env = BuildEnv::with_ca_files(std::slice::from_ref(&ca), Some(&base)).unwrap();
        assert_eq!(env.ca_sources(), [ca.clone(), base.clone()]);
        let mut p = plan("FROM a AS build\nRUN npm ci\nfrom b\nCOPY --from=build /app /app\n");
        env.apply(&mut p);
        let bundle = String::from_utf8(p.files[CA_CONTEXT_NAME].clone()).unwrap();
        assert!(bundle.contains("MIIB") && bundle.contains("SYSTEM"), "{bundle}");
        let trust = "COPY [\".kraken-build-ca.pem\",\"/etc/kraken/build-ca.pem\"]\n\
                     ARG NODE_EXTRA_CA_CERTS=/etc/kraken/build-ca.pem\nARG PIP_CERT=/etc/kraken/build-ca.pem\n\
                     ARG SSL_CERT_FILE=/etc/kraken/build-ca.pem\nARG REQUESTS_CA_BUNDLE=/etc/kraken/build-ca.pem\n";
        assert_eq!(
            p.dockerfile,
            format!("FROM a AS build\n{trust}RUN npm ci\nfrom b\n{trust}COPY --from=build /app /app\n")
        );
        // The base itself given as the CA file is not repeated.
        let env = BuildEnv::with_ca_files(std::slice::from_ref(&base), Some(&base)).unwrap();
        assert_eq!(env.ca_sources(), [base]);
    }

    #[test]
    fn an_own_dockerfile_is_left_as_written_but_gets_the_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, CERT).unwrap();
        let env = BuildEnv::with_ca_files(&[ca], None).unwrap().with_proxy([
            ("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string()),
            ("no_proxy".to_string(), "localhost".to_string()),
            ("HTTP_PROXY".to_string(), " ".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let mut p = plan("FROM mine\nCMD x\n");
        p.verbatim = true;
        env.apply(&mut p);
        assert_eq!(p.dockerfile, "FROM mine\nCMD x\n");
        assert!(p.files.is_empty());
        let args: Vec<(&str, &str)> = p.build_args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(args, [("HTTPS_PROXY", "http://proxy:3128"), ("no_proxy", "localhost")]);
        assert!(!format!("{env:?}").contains("proxy:3128"), "{env:?}");
    }

    #[test]
    fn no_settings_change_nothing() {
        let mut p = plan("FROM a\n");
        BuildEnv::none().apply(&mut p);
        assert_eq!(p, plan("FROM a\n"));
        assert!(!BuildEnv::with_ca_files(&[], Some(Path::new("/etc/ssl/certs/ca-certificates.crt")))
            .unwrap()
            .has_ca());
    }

    #[test]
    fn bad_ca_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let err = BuildEnv::with_ca_files(&[missing], None).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the build CA file") && err.contains("missing.crt"), "{err}");
        assert!(err.contains("PEM file of CA certificates"), "{err}");
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01]).unwrap();
        let err = BuildEnv::with_ca_files(&[der], None).unwrap_err().to_string();
        assert!(
            err.contains("holds no PEM certificate") && err.contains("/etc/ssl/certs/ca-certificates.crt"),
            "{err}"
        );
    }
}
