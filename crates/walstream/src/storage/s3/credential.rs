//! Where S3 credentials come from, in order:
//!
//! 1. the replica config's `access-key-id` / `secret-access-key`;
//! 2. `LITESTREAM_ACCESS_KEY_ID` / `LITESTREAM_SECRET_ACCESS_KEY`;
//! 3. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`);
//! 4. the shared files' profile (`AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`):
//!    `aws_access_key_id` / `aws_secret_access_key` / `aws_session_token` from
//!    `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`), then from `~/.aws/config`
//!    (`AWS_CONFIG_FILE`). object_store does not read these files, so this module does;
//! 5. whatever object_store finds itself: web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` +
//!    `AWS_ROLE_ARN`), ECS/EKS container credentials, then EC2 instance metadata.
//!
//! The profile's `region` also counts when nothing more explicit names one. Profiles that get
//! their credentials by other means (`role_arn`, `credential_process`, `sso_*`) are not
//! followed: walstream says so and goes on down the chain.
//!
//! Everything reads the environment through [`Env`], so tests need not touch the process's.
use std::collections::HashMap;
use std::path::PathBuf;

/// Read-only view of the environment and the home directory.
pub(crate) struct Env<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
    home: Option<PathBuf>,
}

impl<'a> Env<'a> {
    /// A view over a lookup function and a home directory.
    pub(crate) fn new(var: &'a dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        Env { var, home }
    }

    /// A non-empty variable.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.var)(name).filter(|v| !v.is_empty())
    }

    fn file(&self, var: &str, default: &str) -> Option<PathBuf> {
        self.var(var)
            .map(PathBuf::from)
            .or_else(|| self.home.as_ref().map(|h| h.join(default)))
    }
}

/// The process environment with `$HOME`.
pub(crate) fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Resolved credentials.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// Fixed keys.
    Static {
        /// Access key ID.
        key_id: String,
        /// Secret access key.
        secret: String,
        /// Session token.
        token: Option<String>,
        /// Where they came from, for logs ("config", "LITESTREAM_* environment", ...).
        source: String,
    },
    /// None of the above: object_store's own chain (web identity, container, instance metadata).
    Chain,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Static { key_id, source, .. } => f
                .debug_struct("Static")
                .field("key_id", key_id)
                .field("source", source)
                .finish_non_exhaustive(),
            Credentials::Chain => f.write_str("Chain"),
        }
    }
}

impl Credentials {
    /// The values that must never appear in a message.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            Credentials::Static { secret, token, .. } => {
                let mut v = vec![secret.clone()];
                v.extend(token.clone());
                v
            }
            Credentials::Chain => Vec::new(),
        }
    }
}

/// What the chain found: the credentials, and a region from the profile if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The credentials.
    pub credentials: Credentials,
    /// `region` of the profile in the shared config file.
    pub profile_region: Option<String>,
    /// Things worth a warning (unsupported profile features).
    pub warnings: Vec<String>,
}

/// Walks the chain. `config_key`/`config_secret` are the replica config's keys. Errors name the
/// key or file at fault and never hold a secret.
pub(crate) fn resolve(
    config_key: Option<&str>,
    config_secret: Option<&str>,
    env: &Env<'_>,
) -> Result<Resolved, String> {
    let non_empty = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_string);
    let pair = |key: Option<String>,
                secret: Option<String>,
                key_name: &str,
                secret_name: &str|
     -> Result<Option<(String, String)>, String> {
        match (key, secret) {
            (Some(k), Some(s)) => Ok(Some((k, s))),
            (Some(_), None) => Err(format!("{key_name} is set but {secret_name} is not")),
            (None, Some(_)) => Err(format!("{secret_name} is set but {key_name} is not")),
            (None, None) => Ok(None),
        }
    };
    let (profile, profile_explicit) = match env
        .var("AWS_PROFILE")
        .or_else(|| env.var("AWS_DEFAULT_PROFILE"))
    {
        Some(p) => (p, true),
        None => ("default".to_string(), false),
    };
    let shared = SharedProfile::load(env, &profile)?;
    if profile_explicit && !shared.found {
        return Err(format!(
            "AWS_PROFILE {profile:?}: no such profile in {}",
            shared.files_searched
        ));
    }
    let profile_region = shared.get("region");
    let mut warnings = Vec::new();

    let statics = [
        (
            pair(
                non_empty(config_key),
                non_empty(config_secret),
                "access-key-id",
                "secret-access-key",
            )?,
            None,
            "config".to_string(),
        ),
        (
            pair(
                env.var("LITESTREAM_ACCESS_KEY_ID"),
                env.var("LITESTREAM_SECRET_ACCESS_KEY"),
                "LITESTREAM_ACCESS_KEY_ID",
                "LITESTREAM_SECRET_ACCESS_KEY",
            )?,
            None,
            "LITESTREAM_* environment".to_string(),
        ),
        (
            pair(
                env.var("AWS_ACCESS_KEY_ID"),
                env.var("AWS_SECRET_ACCESS_KEY"),
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
            )?,
            env.var("AWS_SESSION_TOKEN"),
            "AWS_* environment".to_string(),
        ),
        (
            pair(
                shared.get("aws_access_key_id"),
                shared.get("aws_secret_access_key"),
                "aws_access_key_id",
                "aws_secret_access_key",
            )
            .map_err(|e| format!("profile {profile:?}: {e}"))?,
            shared.get("aws_session_token"),
            format!("profile {profile:?}"),
        ),
    ];
    for (keys, token, source) in statics {
        if let Some((key_id, secret)) = keys {
            return Ok(Resolved {
                credentials: Credentials::Static {
                    key_id,
                    secret,
                    token,
                    source,
                },
                profile_region,
                warnings,
            });
        }
    }
    for key in [
        "role_arn",
        "credential_process",
        "sso_start_url",
        "sso_session",
    ] {
        if shared.get(key).is_some() {
            warnings.push(format!(
                "profile {profile:?} uses `{key}`, which walstream does not follow; trying web identity, container and instance credentials instead"
            ));
            break;
        }
    }
    Ok(Resolved {
        credentials: Credentials::Chain,
        profile_region,
        warnings,
    })
}

/// One profile's keys from the credentials file and the config file (credentials file first).
struct SharedProfile {
    sections: Vec<HashMap<String, String>>,
    found: bool,
    files_searched: String,
}

impl SharedProfile {
    fn load(env: &Env<'_>, profile: &str) -> Result<SharedProfile, String> {
        let mut sections = Vec::new();
        let mut searched = Vec::new();
        let files = [
            (
                env.file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
                false,
            ),
            (env.file("AWS_CONFIG_FILE", ".aws/config"), true),
        ];
        for (file, is_config) in files {
            let Some(file) = file else { continue };
            searched.push(file.display().to_string());
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", file.display())),
            };
            let ini = parse_ini(&text);
            if let Some(s) = profile_section(&ini, profile, is_config) {
                sections.push(s.clone());
            }
        }
        Ok(SharedProfile {
            found: !sections.is_empty(),
            sections,
            files_searched: if searched.is_empty() {
                "(no home directory)".to_string()
            } else {
                searched.join(" or ")
            },
        })
    }

    fn get(&self, key: &str) -> Option<String> {
        self.sections
            .iter()
            .find_map(|s| s.get(key).filter(|v| !v.is_empty()).cloned())
    }
}

/// The section of `profile`: `[name]` in the credentials file; `[profile name]` (or `[default]`)
/// in the config file.
fn profile_section<'a>(
    ini: &'a HashMap<String, HashMap<String, String>>,
    profile: &str,
    is_config: bool,
) -> Option<&'a HashMap<String, String>> {
    if !is_config {
        return ini.get(profile);
    }
    ini.get(&format!("profile {profile}")).or_else(|| {
        if profile == "default" {
            ini.get("default")
        } else {
            None
        }
    })
}

/// A small INI reader for the AWS shared files: `[section]` headers, `key = value` lines, `#`
/// and `;` comments. Keys are lower-cased; indented lines (nested settings such as `s3 =`
/// blocks) are skipped.
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((k, v))) = (&current, line.split_once('=')) else {
            continue;
        };
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Resolves with a snapshot of `vars` as the environment.
    fn run(
        vars: &HashMap<&'static str, String>,
        home: Option<&std::path::Path>,
        key: Option<&str>,
        secret: Option<&str>,
    ) -> Result<Resolved, String> {
        let f = |k: &str| vars.get(k).cloned();
        resolve(key, secret, &Env::new(&f, home.map(|h| h.to_path_buf())))
    }

    fn key_of(r: &Resolved) -> (String, String) {
        match &r.credentials {
            Credentials::Static { key_id, source, .. } => (key_id.clone(), source.clone()),
            Credentials::Chain => ("chain".into(), String::new()),
        }
    }

    #[test]
    fn credential_chain_order_config_litestream_aws_profile() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".aws")).unwrap();
        std::fs::write(
            home.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = profilesecret\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join(".aws/config"),
            "[default]\nregion = eu-west-3\n",
        )
        .unwrap();
        let mut vars: HashMap<&'static str, String> = HashMap::new();
        vars.insert("LITESTREAM_ACCESS_KEY_ID", "LSKEY".into());
        vars.insert("LITESTREAM_SECRET_ACCESS_KEY", "lssecret".into());
        vars.insert("AWS_ACCESS_KEY_ID", "AWSKEY".into());
        vars.insert("AWS_SECRET_ACCESS_KEY", "awssecret".into());
        let home_opt = Some(home.path());
        let r = run(&vars, home_opt, Some("CFGKEY"), Some("cfgsecret")).unwrap();
        assert_eq!(key_of(&r), ("CFGKEY".into(), "config".into()));
        assert_eq!(r.profile_region.as_deref(), Some("eu-west-3"));
        let r = run(&vars, home_opt, None, None).unwrap();
        assert_eq!(key_of(&r).0, "LSKEY");
        vars.remove("LITESTREAM_ACCESS_KEY_ID");
        vars.remove("LITESTREAM_SECRET_ACCESS_KEY");
        vars.insert("AWS_SESSION_TOKEN", "tok".into());
        let home_opt = Some(home.path());
        let r = run(&vars, home_opt, None, None).unwrap();
        assert_eq!(key_of(&r).0, "AWSKEY");
        assert_eq!(r.credentials.secrets(), vec!["awssecret", "tok"]);
        vars.clear();
        let home_opt = Some(home.path());
        let r = run(&vars, home_opt, None, None).unwrap();
        assert_eq!(
            key_of(&r),
            ("PROFILEKEY".into(), "profile \"default\"".into())
        );
        // Debug never shows the secret.
        assert!(!format!("{r:?}").contains("profilesecret"));
    }

    #[test]
    fn credential_named_profile_from_config_file_and_missing_profile() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join("cfg");
        std::fs::write(
            &cfg,
            "# comment\n[default]\nregion=us-west-1\n[profile  backup ]\nregion = ap-south-1\naws_access_key_id=BK\naws_secret_access_key = bs\ns3 =\n  addressing_style = path\n[profile sso]\nsso_start_url = https://x\n",
        )
        .unwrap();
        let mut vars: HashMap<&'static str, String> = HashMap::new();
        vars.insert("AWS_CONFIG_FILE", cfg.display().to_string());
        vars.insert("AWS_PROFILE", "backup".into());
        let home_opt = None;
        let r = run(&vars, home_opt, None, None).unwrap();
        assert_eq!(key_of(&r).0, "BK");
        assert_eq!(r.profile_region.as_deref(), Some("ap-south-1"));

        vars.insert("AWS_PROFILE", "sso".into());
        let home_opt = None;
        let r = run(&vars, home_opt, None, None).unwrap();
        assert_eq!(r.credentials, Credentials::Chain);
        assert!(r.warnings[0].contains("sso_start_url"), "{:?}", r.warnings);

        vars.insert("AWS_PROFILE", "nope".into());
        let home_opt = None;
        let e = run(&vars, home_opt, None, None).unwrap_err();
        assert!(
            e.contains("\"nope\"") && e.contains("no such profile"),
            "{e}"
        );

        // Without AWS_PROFILE, a missing default profile is simply the chain.
        vars.remove("AWS_PROFILE");
        vars.insert(
            "AWS_CONFIG_FILE",
            home.path().join("none").display().to_string(),
        );
        let home_opt = None;
        assert_eq!(
            run(&vars, home_opt, None, None).unwrap().credentials,
            Credentials::Chain
        );
    }

    #[test]
    fn credential_half_pairs_are_errors_naming_the_missing_key() {
        let vars: HashMap<&'static str, String> = HashMap::new();
        let home_opt = None;
        let e = run(&vars, home_opt, Some("K"), None).unwrap_err();
        assert!(e.contains("secret-access-key is not"), "{e}");
        let e = run(&vars, home_opt, None, Some("supersecret")).unwrap_err();
        assert!(
            e.contains("access-key-id is not") && !e.contains("supersecret"),
            "{e}"
        );
        let mut vars: HashMap<&'static str, String> = HashMap::new();
        vars.insert("AWS_ACCESS_KEY_ID", "A".into());
        let home_opt = None;
        let e = run(&vars, home_opt, None, None).unwrap_err();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
    }
}
