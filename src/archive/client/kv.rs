//! The KV v2 calls the archive makes: `<mount>/data/tenants/{slug}/{key}` and its metadata.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::wire::{WireEntryIn, WireEntryOut};
use super::{ArchiveClient, ArchivedEntry, Result, MAX_VERSIONS};
use crate::archive::error::{error_words, ArchiveError};
use crate::crypto::SecretValue;
use crate::domain::{SecretKey, TenantSlug};

impl ArchiveClient {
    fn kv_path(&self, kind: &str, slug: &TenantSlug, key: Option<&SecretKey>) -> String {
        match key {
            Some(key) => format!("{}/{kind}/tenants/{slug}/{key}", self.inner.cfg.mount),
            None => format!("{}/{kind}/tenants/{slug}", self.inner.cfg.mount),
        }
    }

    /// The key's newest KV version (0 when the key does not exist).
    pub async fn current_version(&self, slug: &TenantSlug, key: &SecretKey) -> Result<u32> {
        let url = self.url(&self.kv_path("metadata", slug, Some(key)));
        let resp = self.authed(Method::GET, url, None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(0),
            s if s.is_success() => {
                let v = resp.json()?;
                v["data"]["current_version"]
                    .as_u64()
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        ArchiveError::Protocol("metadata without current_version".into())
                    })
            }
            _ => Err(resp.fail("reading archive metadata")),
        }
    }

    /// One KV version of a key; None when it does not exist or was deleted (retention).
    pub async fn read(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        kv_version: u32,
    ) -> Result<Option<ArchivedEntry>> {
        let mut url = self.url(&self.kv_path("data", slug, Some(key)));
        url.query_pairs_mut()
            .append_pair("version", &kv_version.to_string());
        let resp = self.authed(Method::GET, url, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(resp.fail("reading the archive"));
        }
        #[derive(Deserialize)]
        struct Envelope {
            data: Option<Data>,
        }
        #[derive(Deserialize)]
        struct Data {
            data: Option<WireEntryIn>,
        }
        let parsed: Envelope = serde_json::from_slice(&resp.body).map_err(|e| {
            // serde's message names the field and position, never the input.
            ArchiveError::Protocol(format!("archive entry: {e}"))
        })?;
        let Some(w) = parsed.data.and_then(|d| d.data) else {
            return Ok(None);
        };
        Ok(Some(ArchivedEntry {
            value: SecretValue::new(w.value),
            secret_id: w.secret_id,
            version: w.tenant_vault_version,
            reason: w.reason,
            created_at: w.created_at,
            archived_at: w.archived_at,
            retain_until: w.retain_until,
        }))
    }

    /// Adds a KV version if the key's newest version is still `cas`; returns the new one.
    pub async fn write(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        entry: &ArchivedEntry,
        cas: u32,
    ) -> Result<u32> {
        let body = serde_json::to_vec(&json!({
            "options": {"cas": cas},
            "data": WireEntryOut {
                value: entry.value.expose(),
                secret_id: entry.secret_id,
                tenant_vault_version: entry.version,
                reason: &entry.reason,
                created_at: entry.created_at,
                archived_at: entry.archived_at,
                retain_until: entry.retain_until,
            },
        }))
        .map(Zeroizing::new)
        .map_err(|e| ArchiveError::Protocol(e.to_string()))?;
        let url = self.url(&self.kv_path("data", slug, Some(key)));
        let resp = self.authed(Method::POST, url, Some(&body)).await?;
        if resp.status == StatusCode::BAD_REQUEST
            && error_words(&resp.body).contains("check-and-set")
        {
            return Err(ArchiveError::CasConflict);
        }
        if !resp.status.is_success() {
            return Err(resp.fail("writing to the archive"));
        }
        resp.json()?["data"]["version"]
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| ArchiveError::Protocol("write answer without a version".into()))
    }

    /// The key's metadata: retention (`delete_version_after`), no version cap, and
    /// `custom_metadata` (KV v2 keeps one per key, so it describes the newest archived version).
    pub async fn set_metadata(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        custom: &[(&str, String)],
    ) -> Result<()> {
        let custom: serde_json::Map<String, Value> = custom
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let body = serde_json::to_vec(&json!({
            "max_versions": MAX_VERSIONS,
            "delete_version_after": format!("{}s", self.inner.cfg.retention.as_secs()),
            "custom_metadata": custom,
        }))
        .map_err(|e| ArchiveError::Protocol(e.to_string()))?;
        let url = self.url(&self.kv_path("metadata", slug, Some(key)));
        let resp = self.authed(Method::POST, url, Some(&body)).await?;
        if !resp.status.is_success() {
            return Err(resp.fail("writing archive metadata"));
        }
        Ok(())
    }

    /// The keys archived for a tenant.
    pub async fn list_keys(&self, slug: &TenantSlug) -> Result<Vec<String>> {
        let mut url = self.url(&format!("{}/", self.kv_path("metadata", slug, None)));
        url.query_pairs_mut().append_pair("list", "true");
        let resp = self.authed(Method::GET, url, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !resp.status.is_success() {
            return Err(resp.fail("listing the archive"));
        }
        Ok(resp.json()?["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes a key with every version and its metadata (KV v2 metadata delete).
    pub async fn delete_key(&self, slug: &TenantSlug, key: &str) -> Result<()> {
        let path = format!("{}/{key}", self.kv_path("metadata", slug, None));
        let resp = self.authed(Method::DELETE, self.url(&path), None).await?;
        if !resp.status.is_success() && resp.status != StatusCode::NOT_FOUND {
            return Err(resp.fail("deleting from the archive"));
        }
        Ok(())
    }
}
