//! A minimal local state store: `<dir>/<environment>.json`, written atomically (temporary
//! file, fsync, rename), locked with an exclusive `<environment>.lock` file.
//!
//! Interim: the local backend with stale-lock handling and the `state` commands comes
//! from the state branch and replaces this file; until then the engine commands and the
//! crash test persist through it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::state::{Error, LockGuard, LockInfo, StateDocument, StateStore};

pub struct JsonFileStore {
    directory: PathBuf,
}

impl JsonFileStore {
    pub fn new(directory: impl Into<PathBuf>) -> Self {
        JsonFileStore {
            directory: directory.into(),
        }
    }

    pub fn path(&self, environment: &str) -> PathBuf {
        self.directory.join(format!("{environment}.json"))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.display().to_string();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

impl StateStore for JsonFileStore {
    fn load(&self, environment: &str) -> Result<Option<StateDocument>, Error> {
        let path = self.path(environment);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("read", &path)(error)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn persist(&self, document: &StateDocument) -> Result<(), Error> {
        std::fs::create_dir_all(&self.directory).map_err(io("create", &self.directory))?;
        let path = self.path(&document.environment);
        let temporary = self
            .directory
            .join(format!(".{}.json.tmp", document.environment));
        let text = serde_json::to_vec_pretty(document).expect("state serializes");
        let mut file = std::fs::File::create(&temporary).map_err(io("write", &temporary))?;
        file.write_all(&text).map_err(io("write", &temporary))?;
        file.sync_all().map_err(io("write", &temporary))?;
        std::fs::rename(&temporary, &path).map_err(io("write", &path))?;
        // The rename is durable once the directory is.
        if let Ok(directory) = std::fs::File::open(&self.directory) {
            let _ = directory.sync_all();
        }
        Ok(())
    }

    fn lock(&self, environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, Error> {
        std::fs::create_dir_all(&self.directory).map_err(io("create", &self.directory))?;
        let path = self.directory.join(format!("{environment}.lock"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                let text = serde_json::to_vec_pretty(&info).expect("lock info serializes");
                file.write_all(&text).map_err(io("write", &path))?;
                Ok(Box::new(FileLock { path, info }))
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
                    .map(|h| {
                        format!(
                            "{} ({}@{}, pid {}, since {})",
                            h.operation, h.owner, h.host, h.pid, h.created
                        )
                    })
                    .unwrap_or_else(|| format!("the lock file {}", path.display()));
                Err(Error::Locked {
                    environment: environment.to_string(),
                    holder,
                })
            }
            Err(error) => Err(io("create", &path)(error)),
        }
    }
}

struct FileLock {
    path: PathBuf,
    info: LockInfo,
}

impl LockGuard for FileLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LockInfo {
        LockInfo {
            id: "1".into(),
            operation: "apply".into(),
            owner: "me".into(),
            host: "here".into(),
            pid: 1,
            created: chrono::Utc::now(),
        }
    }

    #[test]
    fn documents_round_trip_and_locks_exclude() {
        let directory = tempfile::tempdir().unwrap();
        let store = JsonFileStore::new(directory.path().join("state"));
        assert!(store.load("dev").unwrap().is_none());
        let mut document = StateDocument::new("dev");
        document.serial = 3;
        store.persist(&document).unwrap();
        assert_eq!(store.load("dev").unwrap(), Some(document));
        let guard = store.lock("dev", info()).unwrap();
        let error = store.lock("dev", info()).err().unwrap();
        assert!(
            error.to_string().contains("locked by apply (me@here"),
            "{error}"
        );
        drop(guard);
        assert!(store.lock("dev", info()).is_ok());
    }
}
