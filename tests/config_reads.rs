//! One read of the configuration per command run: `plan`, `apply` (promotion gate, plan,
//! apply and the ready signal's look after it) and `bootstrap` (every environment, its
//! promotion gate, plan, apply and ready signal) each read the layer files once and
//! compose everything else from that read. Counted per thread by the `testing`
//! feature's `config::layers::reads`.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use infraflux::config::layers::reads;
use infraflux_provider::Attributes;
use infraflux_provider::signal::{
    ClusterSignal, Outcome, ReadyReport, ReadyRequest, RenderError, RenderedManifest,
};
use support::engine::Engine;

/// A cluster that is ready as soon as it is asked.
struct ReadyAtOnce;

#[async_trait]
impl ClusterSignal for ReadyAtOnce {
    async fn ready_signal(&self, _request: ReadyRequest) -> Result<ReadyReport, String> {
        Ok(ReadyReport {
            outcome: Outcome::Ready,
            waited_seconds: 0,
            checks: Vec::new(),
        })
    }

    fn is_handoff(&self, kind: &str) -> bool {
        kind == "kubernetes_handoff"
    }

    async fn render_manifests(
        &self,
        _kind: &str,
        _attributes: &Attributes,
    ) -> Result<Vec<RenderedManifest>, RenderError> {
        Ok(Vec::new())
    }
}

#[test]
fn plan_apply_and_bootstrap_each_read_the_configuration_once() {
    let engine = Engine::new().clusters(Arc::new(ReadyAtOnce));
    for args in [
        &["plan", "--env", "dev"][..],
        &["apply", "--env", "dev", "--auto-approve"],
        // The promotion gate composes every environment: from the same read.
        &["apply", "--env", "staging", "--auto-approve"],
        &["plan", "--env", "staging", "--detailed-exitcode"],
        // dev and staging plan no changes, prod is applied; each signal is taken.
        &["bootstrap", "--auto-approve"],
    ] {
        let before = reads::so_far();
        let run = engine.run(args);
        let reads = reads::so_far() - before;
        assert_eq!(run.code, 0, "{args:?}: {run}");
        assert_eq!(reads, 1, "{args:?} read the configuration {reads} times");
    }
}
