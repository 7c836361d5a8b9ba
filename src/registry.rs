//! Providers by name. The binary fills the registry with the concrete providers; the
//! engine looks each resource's provider up here and depends on the contract only.

use std::collections::BTreeMap;
use std::sync::Arc;

use infraflux_provider::Provider;
use infraflux_provider::signal::ClusterSignal;

#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    /// The ready signal and manifest rendering (`bootstrap`), when a provider offers them.
    signal: Option<Arc<dyn ClusterSignal>>,
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a provider under its [`Provider::name`], replacing one of the same name.
    pub fn register(&mut self, provider: Arc<dyn Provider>) -> &mut Self {
        self.providers.insert(provider.name().to_string(), provider);
        self
    }

    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.register(provider);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Take the ready signal and manifest rendering from `signal`.
    pub fn with_signal(mut self, signal: Arc<dyn ClusterSignal>) -> Self {
        self.signal = Some(signal);
        self
    }

    pub fn set_signal(&mut self, signal: Arc<dyn ClusterSignal>) -> &mut Self {
        self.signal = Some(signal);
        self
    }

    pub fn signal(&self) -> Option<&Arc<dyn ClusterSignal>> {
        self.signal.as_ref()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}
