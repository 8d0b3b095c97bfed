//! The emulator's data: identities, issued tokens, projects, environments, folders and
//! secret versions, all behind one mutex.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use zeroize::Zeroizing;

use super::faults::Faults;
use super::seed::Role;
use super::Counters;

pub(super) struct Identity {
    pub(super) id: String,
    pub(super) client_secret_id: String,
    pub(super) client_secret: Zeroizing<String>,
    pub(super) max_ttl: u64,
    pub(super) role: Role,
    pub(super) projects: Option<HashSet<String>>,
}

pub(super) struct TokenRec {
    pub(super) client_id: String,
    pub(super) issued: Instant,
    pub(super) ttl: u64,
    pub(super) max_ttl: u64,
    pub(super) expires: Option<Instant>,
}

pub(super) struct SecretVersion {
    pub(super) value: Zeroizing<String>,
    pub(super) comment: String,
    pub(super) at: String,
}

pub(super) struct SecretRec {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) created_at: String,
    pub(super) versions: Vec<SecretVersion>,
}

pub(super) struct FolderRec {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) parent_id: Option<String>,
    pub(super) created_at: String,
    /// Keyed by (type, name).
    pub(super) secrets: BTreeMap<(String, String), SecretRec>,
}

pub(super) struct Env {
    pub(super) id: String,
    /// Keyed by normalised path; `/` always exists.
    pub(super) folders: BTreeMap<String, FolderRec>,
}

pub(super) struct Project {
    pub(super) slug: String,
    pub(super) envs: BTreeMap<String, Env>,
}

#[derive(Default)]
pub(super) struct Data {
    pub(super) identities: HashMap<String, Identity>,
    pub(super) projects: BTreeMap<String, Project>,
    pub(super) tokens: HashMap<String, TokenRec>,
    pub(super) windows: HashMap<(IpAddr, String), (Instant, u32)>,
    pub(super) webhooks: Vec<super::webhooks::WebhookRec>,
}

pub(super) struct Shared {
    pub(super) data: Mutex<Data>,
    pub(super) faults: Mutex<Faults>,
    pub(super) jwt_key: [u8; 32],
    pub(super) counters: Counters,
    pub(super) rate_limit_per_minute: Option<u32>,
}

pub(super) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Env {
    pub(super) fn new() -> Self {
        let mut folders = BTreeMap::new();
        folders.insert(
            "/".to_owned(),
            FolderRec {
                id: uuid(),
                name: "root".into(),
                parent_id: None,
                created_at: now_iso(),
                secrets: BTreeMap::new(),
            },
        );
        Self {
            id: uuid(),
            folders,
        }
    }

    /// Creates `name` in `parent` (and `parent` on the way, as the Oct-2024 server does).
    /// Returns the folder's path.
    pub(super) fn ensure_folder(&mut self, parent: &str, name: &str) -> String {
        let mut cur = String::from("/");
        let mut parts: Vec<&str> = parent.split('/').filter(|s| !s.is_empty()).collect();
        parts.push(name);
        for part in parts {
            let parent_id = self.folders[&cur].id.clone();
            let path = if cur == "/" {
                format!("/{part}")
            } else {
                format!("{cur}/{part}")
            };
            self.folders
                .entry(path.clone())
                .or_insert_with(|| FolderRec {
                    id: uuid(),
                    name: part.to_owned(),
                    parent_id: Some(parent_id),
                    created_at: now_iso(),
                    secrets: BTreeMap::new(),
                });
            cur = path;
        }
        cur
    }

    pub(super) fn ensure_path(&mut self, path: &str) -> String {
        match path.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => self.ensure_folder(parent, name),
            _ => "/".into(),
        }
    }
}
