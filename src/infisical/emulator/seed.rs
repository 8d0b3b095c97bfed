//! The seed file format and how a seed is merged into the emulator's data.

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::EmulatorError;
use super::trim_value;

use super::secrets::normalise_path;
use super::state::{now_iso, uuid, Data, Env, Identity, Project, SecretRec, SecretVersion};
use super::DEFAULT_MAX_TTL;

/// A machine identity with Universal Auth.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedIdentity {
    pub client_id: String,
    pub client_secret: String,
    /// `accessTokenMaxTTL` in seconds (default 2592000; 0 = none).
    #[serde(default, rename = "accessTokenMaxTTL")]
    pub access_token_max_ttl: Option<u64>,
    /// `admin` (default) or `viewer` (read only).
    #[serde(default)]
    pub role: Role,
    /// Project ids it is a member of; absent = every project.
    #[serde(default)]
    pub projects: Option<Vec<String>>,
}

impl std::fmt::Debug for SeedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedIdentity")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Admin,
    Viewer,
}

/// A project with environments, folders and secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedProject {
    pub id: String,
    #[serde(default)]
    pub slug: Option<String>,
    /// Environment slugs (default `dev`, `staging`, `prod`).
    #[serde(default = "default_envs")]
    pub environments: Vec<String>,
    /// env slug -> folder paths to create (parents created on the way).
    #[serde(default)]
    pub folders: BTreeMap<String, Vec<String>>,
    /// env slug -> folder path -> secret name -> value. Folders are created as needed;
    /// values are trimmed as the API would.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

pub(super) fn default_envs() -> Vec<String> {
    vec!["dev".into(), "staging".into(), "prod".into()]
}

/// The seed file format (see `docs/infisical-emulator.md`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub identities: Vec<SeedIdentity>,
    #[serde(default)]
    pub projects: Vec<SeedProject>,
}

impl Seed {
    /// Reads a seed file.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Self, EmulatorError> {
        let text =
            std::fs::read_to_string(path.as_ref()).map_err(|cause| EmulatorError::SeedRead {
                path: path.as_ref().to_path_buf(),
                cause,
            })?;
        serde_json::from_str(&text).map_err(|cause| EmulatorError::SeedParse {
            path: path.as_ref().to_path_buf(),
            cause,
        })
    }

    /// One admin identity and one project with the default environments, empty.
    pub fn single(project_id: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            identities: vec![SeedIdentity {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                access_token_max_ttl: None,
                role: Role::Admin,
                projects: None,
            }],
            projects: vec![SeedProject {
                id: project_id.into(),
                slug: None,
                environments: default_envs(),
                folders: BTreeMap::new(),
                secrets: BTreeMap::new(),
            }],
        }
    }

    /// Adds one secret (creating the project, environment and folder entries as needed).
    pub fn with_secret(
        mut self,
        project_id: &str,
        environment: &str,
        path: &str,
        name: &str,
        value: &str,
    ) -> Self {
        let idx = match self.projects.iter().position(|p| p.id == project_id) {
            Some(i) => i,
            None => {
                self.projects.push(SeedProject {
                    id: project_id.into(),
                    slug: None,
                    environments: default_envs(),
                    folders: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                });
                self.projects.len() - 1
            }
        };
        let project = &mut self.projects[idx];
        if !project.environments.iter().any(|e| e == environment) {
            project.environments.push(environment.into());
        }
        project
            .secrets
            .entry(environment.into())
            .or_default()
            .entry(path.into())
            .or_default()
            .insert(name.into(), value.into());
        self
    }
}

impl Data {
    pub(super) fn apply_seed(&mut self, seed: &Seed) -> Result<(), EmulatorError> {
        for p in &seed.projects {
            if p.id.is_empty() {
                return Err(EmulatorError::ProjectWithoutId);
            }
            let project = self
                .projects
                .entry(p.id.clone())
                .or_insert_with(|| Project {
                    slug: p.slug.clone().unwrap_or_else(|| p.id.clone()),
                    envs: BTreeMap::new(),
                });
            if let Some(slug) = &p.slug {
                project.slug = slug.clone();
            }
            for env in &p.environments {
                project.envs.entry(env.clone()).or_insert_with(Env::new);
            }
            let check_path = |path: &str| -> Result<String, EmulatorError> {
                match normalise_path(path) {
                    Ok(p) if p.starts_with('/') && !p.contains("//") => Ok(p),
                    _ => Err(EmulatorError::BadFolderPath(path.to_owned())),
                }
            };
            for (env, paths) in &p.folders {
                let e =
                    project
                        .envs
                        .get_mut(env)
                        .ok_or_else(|| EmulatorError::UnknownEnvironment {
                            what: "folders",
                            env: env.clone(),
                        })?;
                for path in paths {
                    e.ensure_path(&check_path(path)?);
                }
            }
            for (env, by_path) in &p.secrets {
                let e =
                    project
                        .envs
                        .get_mut(env)
                        .ok_or_else(|| EmulatorError::UnknownEnvironment {
                            what: "secrets",
                            env: env.clone(),
                        })?;
                for (path, secrets) in by_path {
                    let path = e.ensure_path(&check_path(path)?);
                    let folder = e.folders.get_mut(&path).expect("just created");
                    for (name, value) in secrets {
                        if name.trim().is_empty() || name.contains('/') || name.contains(':') {
                            return Err(EmulatorError::BadSecretName(name.clone()));
                        }
                        let key = ("shared".to_owned(), name.clone());
                        let version = SecretVersion {
                            value: Zeroizing::new(trim_value(value)),
                            comment: String::new(),
                            at: now_iso(),
                        };
                        match folder.secrets.get_mut(&key) {
                            Some(rec) => rec.versions.push(version),
                            None => {
                                folder.secrets.insert(
                                    key,
                                    SecretRec {
                                        id: uuid(),
                                        name: name.clone(),
                                        kind: "shared".into(),
                                        created_at: now_iso(),
                                        versions: vec![version],
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
        for i in &seed.identities {
            if i.client_id.is_empty() || i.client_secret.is_empty() {
                return Err(EmulatorError::IdentityIncomplete);
            }
            self.identities.insert(
                i.client_id.clone(),
                Identity {
                    id: uuid(),
                    client_secret_id: uuid(),
                    client_secret: Zeroizing::new(i.client_secret.clone()),
                    max_ttl: i.access_token_max_ttl.unwrap_or(DEFAULT_MAX_TTL),
                    role: i.role,
                    projects: i.projects.as_ref().map(|v| v.iter().cloned().collect()),
                },
            );
        }
        Ok(())
    }
}
