//! The data directory: where the database, keys and sealed chunks live, and `sluice init`.
//!
//! It owns the layout and creating it. It must not hold keys in memory longer than it
//! takes to write them; loading is `keys`' job.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::keys::{SigningKey, create_master_key};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("sluice.db")
    }
    pub fn master_key(&self) -> PathBuf {
        self.root.join("master.key")
    }
    /// The new master key during a rotation, until the rotation is complete.
    pub fn master_key_next(&self) -> PathBuf {
        self.root.join("master.key.next")
    }
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("audit-signing.key")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Creates the directory (0700), the database, the master key (0600) and the audit
    /// signing key (0600). Refuses a directory that already holds a Sluice database.
    pub async fn init(&self) -> anyhow::Result<()> {
        if self.database().exists() {
            bail!("{} is already initialised", self.root.display());
        }
        fs::create_dir_all(self.blobs()).with_context(|| format!("creating {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", self.root.display()))?;
        if std::env::var_os(crate::keys::MASTER_KEY_ENV).is_none() {
            create_master_key(&self.master_key())?;
        }
        SigningKey::create(&self.signing_key())?;
        let store = Store::open_sqlite(&self.database(), true).await?;
        store.close().await;
        Ok(())
    }
}
