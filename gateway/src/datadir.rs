//! The data directory: where the database, keys and sealed chunks live, and `sluice init`.
//!
//! It owns the layout, creating it, and the audit signing key's file. It must not hold
//! keys in memory longer than it takes to write or load them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use sluice_audit::SigningKey;
use sluice_vault::keys::{create_master_key, read_secret_file, write_secret_file};

use crate::chunk_store::{ChunkStore, Location};
use crate::store::{Database, Store};

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

    /// Creates the directory (0700), the database's tables (and with SQLite its file),
    /// the master key (0600, unless it comes from the environment) and the audit signing
    /// key (0600). Refuses a directory that already holds a Sluice database or keys, a
    /// PostgreSQL database that already holds Sluice's tables, and an object store that
    /// already holds objects (another platform's chunks, or an earlier `init`'s).
    pub async fn init(&self, master_key_file: bool, database: &Database, objects: &Location) -> anyhow::Result<()> {
        if self.database().exists() || self.signing_key().exists() {
            bail!("{} is already initialised", self.root.display());
        }
        fs::create_dir_all(self.blobs()).with_context(|| format!("creating {}", self.root.display()))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", self.root.display()))?;
        // Nothing is written anywhere before every shared store is known to be new.
        let chunks = ChunkStore::open(objects)?;
        if !chunks.is_empty_async().await? {
            bail!(
                "the object store {} already holds objects: give an empty bucket or prefix to a new platform",
                objects.describe()
            );
        }
        // The database first: a PostgreSQL database that is already initialised is refused
        // before any key file is written.
        let store = Store::open(database, true).await?;
        store.close().await;
        if master_key_file {
            create_master_key(&self.master_key())?;
        }
        let pkcs8 = zeroize::Zeroizing::new(SigningKey::generate_pkcs8().map_err(anyhow::Error::msg)?);
        write_secret_file(&self.signing_key(), &pkcs8)?;
        Ok(())
    }

    /// Loads the audit signing key (its file must be private to this user).
    pub fn load_signing_key(&self) -> anyhow::Result<SigningKey> {
        let path = self.signing_key();
        SigningKey::from_pkcs8(&read_secret_file(&path)?)
            .map_err(|problem| anyhow::anyhow!("{}: {problem}", path.display()))
    }
}
