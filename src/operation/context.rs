//! Where an operation runs: the providers, the state store, the variables for
//! `${env:…}`, the terminal (data to `out`, progress to `err`, a prompt when there is
//! someone to ask) and the run's cancellation. The command layer builds it for the real
//! process; tests build their own.

use std::io::Write;
use std::sync::{Arc, Mutex};
#[cfg(test)]
use std::time::Duration;

use crate::apply::CancellationToken;
use crate::config;
use crate::registry::ProviderRegistry;
use crate::state::{LockGuard, LockInfo, StateDocument, StateStore, UnlockedRead};

use super::diagnostic::diagnostic;

/// A writer several places can hold (data goes to `out`, progress to `err`).
#[derive(Clone)]
pub struct Sink(Arc<Mutex<Box<dyn Write + Send>>>);

impl Sink {
    pub fn new(writer: impl Write + Send + 'static) -> Self {
        Sink(Arc::new(Mutex::new(Box::new(writer))))
    }

    /// A sink that keeps what is written, and a handle to read it.
    pub fn buffer() -> (Sink, Arc<Mutex<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Arc::new(Mutex::new(Vec::new()));
        (Sink::new(Shared(buffer.clone())), buffer)
    }

    pub fn write(&self, text: &str) {
        let mut writer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Output that cannot be written (a closed pipe) is not worth failing an apply for.
        let _ = writer.write_all(text.as_bytes());
        let _ = writer.flush();
    }
}

/// Asks the user a question and returns the answer.
pub type Prompt = Box<dyn Fn(&str) -> String + Send + Sync>;

/// Where the operations run.
pub struct Context {
    pub providers: ProviderRegistry,
    pub store: Arc<dyn StateStore>,
    /// Environment variables for `${env:…}` in the configuration.
    pub variables: Box<dyn config::Variables + Send + Sync>,
    /// `None` when there is no terminal to ask (approval then needs --auto-approve).
    pub prompt: Option<Prompt>,
    pub out: Sink,
    pub err: Sink,
    pub color: bool,
    /// Cancelled by the first Ctrl-C (when `handle_signals`).
    pub cancel: CancellationToken,
    /// Listen for Ctrl-C during apply.
    pub handle_signals: bool,
}

/// An environment's state lock, held, and the document under it
/// ([`Context::lock_and_reload`]).
pub struct LockedState {
    pub guard: Box<dyn LockGuard>,
    pub state: StateDocument,
    /// The document is not the one read without the lock (there was none, or another
    /// run wrote in between), so what was derived from that read (machine identities)
    /// may be stale.
    pub read_again: bool,
}

impl Context {
    pub fn runtime(&self) -> miette::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| miette::miette!("cannot start the async runtime: {e}"))
    }

    /// Take the environment's state lock and load its document (a new one if none).
    pub fn lock_and_load(
        &self,
        environment: &str,
        operation: &str,
        timeout: std::time::Duration,
    ) -> miette::Result<(Box<dyn LockGuard>, StateDocument)> {
        let info = LockInfo::new(operation);
        let guard = self
            .store
            .lock_with_timeout(environment, info, timeout)
            .map_err(|e| diagnostic(&e, Some(e.help())))?;
        let state = self.load_state(environment)?;
        Ok((guard, state))
    }

    /// Take the environment's state lock and its document: `read` (taken without the
    /// lock earlier in this run) when the store still holds the same revision, so an
    /// unchanged document is not decoded twice; else loaded again.
    pub fn lock_and_reload(
        &self,
        environment: &str,
        operation: &str,
        timeout: std::time::Duration,
        read: Option<UnlockedRead>,
    ) -> miette::Result<LockedState> {
        let Some(UnlockedRead {
            document,
            revision: Some(revision),
        }) = read
        else {
            let (guard, state) = self.lock_and_load(environment, operation, timeout)?;
            return Ok(LockedState {
                guard,
                state,
                read_again: true,
            });
        };
        let info = LockInfo::new(operation);
        let guard = self
            .store
            .lock_with_timeout(environment, info, timeout)
            .map_err(|e| diagnostic(&e, Some(e.help())))?;
        let stored = self
            .store
            .revision(environment)
            .map_err(|e| diagnostic(&e, Some(e.help())))?;
        let read_again = stored != Some(revision);
        let state = if read_again {
            drop(document);
            self.load_state(environment)?
        } else {
            document
        };
        Ok(LockedState {
            guard,
            state,
            read_again,
        })
    }

    /// [`Self::load_state`] with the revision read, for [`Self::lock_and_reload`].
    pub fn read_state(&self, environment: &str) -> miette::Result<UnlockedRead> {
        Ok(
            match self
                .store
                .load_with_revision(environment)
                .map_err(|e| diagnostic(&e, Some(e.help())))?
            {
                Some((document, revision)) => UnlockedRead { document, revision },
                None => UnlockedRead {
                    document: StateDocument::new(environment),
                    revision: None,
                },
            },
        )
    }

    /// The environment's state without the lock (a new document if none): for views,
    /// where a stale read is harmless.
    pub fn load_state(&self, environment: &str) -> miette::Result<StateDocument> {
        Ok(self
            .store
            .load(environment)
            .map_err(|e| diagnostic(&e, Some(e.help())))?
            .unwrap_or_else(|| StateDocument::new(environment)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalStore;

    fn context(store: LocalStore) -> Context {
        Context {
            providers: ProviderRegistry::new(),
            store: Arc::new(store),
            variables: Box::new(crate::config::ProcessVariables),
            prompt: None,
            out: Sink::new(std::io::sink()),
            err: Sink::new(std::io::sink()),
            color: false,
            cancel: CancellationToken::new(),
            handle_signals: false,
        }
    }

    #[test]
    fn a_document_read_before_the_lock_is_kept_only_while_it_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(LocalStore::in_project(dir.path()));
        let store = LocalStore::in_project(dir.path());
        let mut stored = StateDocument::new("dev");
        stored.serial = 1;
        store.persist(&stored).unwrap();

        // Unchanged since the read: the document read is the one planned with (a marker
        // only that copy has shows it was not decoded again).
        let mut read = context.read_state("dev").unwrap();
        assert_eq!(read.document, stored);
        read.document.serial = 99;
        let locked = context
            .lock_and_reload("dev", "plan", Duration::ZERO, Some(read))
            .unwrap();
        assert_eq!(locked.state.serial, 99);
        assert!(!locked.read_again);
        drop(locked);

        // Written in between (another run applied): the stored document.
        let mut read = context.read_state("dev").unwrap();
        read.document.serial = 99;
        stored.serial = 2;
        store.persist(&stored).unwrap();
        let locked = context
            .lock_and_reload("dev", "plan", Duration::ZERO, Some(read))
            .unwrap();
        assert_eq!(locked.state, stored);
        assert!(locked.read_again);
    }

    #[test]
    fn nothing_stored_when_read_is_loaded_again_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let context = context(LocalStore::in_project(dir.path()));
        let read = context.read_state("dev").unwrap();
        assert_eq!(read.revision, None);
        let mut stored = StateDocument::new("dev");
        stored.serial = 1;
        LocalStore::in_project(dir.path()).persist(&stored).unwrap();
        let locked = context
            .lock_and_reload("dev", "plan", Duration::ZERO, Some(read))
            .unwrap();
        assert_eq!(locked.state, stored);
        assert!(locked.read_again);
    }
}
