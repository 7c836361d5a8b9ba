//! Stage 3: the resource graph.
//!
//! [`build_desired`] (in [`desired`]) turns the model into [`DesiredResource`]s (one
//! function per resource family, attribute layout in `docs/resources.md`);
//! [`ResourceGraph::build`] puts them, and the resources state knows but the
//! configuration no longer names (read through [`Recorded`]), into a graph whose edges
//! say what must happen first.
//!
//! [`machines`] keeps state's record of each machine's identity in step with the
//! resources state holds of it.
//!
//! The graph is built by an ordered list of named steps ([`STEPS`]), as OpenTofu's
//! transformers: each step does one thing and a reader can follow them in order.
//!
//! Edges point in *execution order*: `a → b` means "finish `a` before starting `b`". For
//! resources that are created or updated that is dependency → dependant; for resources
//! that are deleted (orphans, and everything under `destroy`) it is reversed, dependant
//! first, so nothing is deleted while something still uses it.
//!
//! One vertex per resource: a replacement (delete then create) happens inside its
//! vertex. A dependant that is itself replaced is therefore deleted after, not before,
//! the resource it depends on; OpenTofu splits the two halves into separate vertices.
//! The one dependant that needs the other order, a machine config whose VM is replaced
//! (the node must leave its cluster while its VM exists), says so with
//! [`DesiredResource::replace_with`]: the apply runs its delete at the start of its
//! host's vertex (`apply::execute::leave_first`).

pub mod desired;
pub mod machines;
pub mod placement;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};

use infraflux_provider::{Attributes, OUTPUTS, reference_target};
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocabulary::{Recorded, ResourceAddr};

pub use desired::build_desired;

/// One resource the configuration asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredResource {
    /// Serialized as `addr`, its old name: the configuration digest of saved plans
    /// (`plan::config_digest`) hashes this JSON and must not change with a rename.
    #[serde(rename = "addr")]
    pub address: ResourceAddr,
    /// The provider that manages it, e.g. `proxmox`.
    pub provider: String,
    /// Resource type, e.g. `proxmox_vm` (the same as `address.kind`).
    pub kind: String,
    /// Attributes; values may be reference markers (`infraflux_provider::reference`).
    pub attributes: Attributes,
    /// Ordering without a data reference.
    pub depends_on: Vec<ResourceAddr>,
    /// Refuse plans that would delete it (`lifecycle.prevent_destroy`).
    pub prevent_destroy: bool,
    /// Where it comes from, for diagnostics: `cluster prod/workload, control plane cp-1`.
    pub origin: String,
    /// Attributes secret because of where their value came from (an age-encrypted file),
    /// whatever the provider's schema says; plans and state mask them.
    #[serde(default, skip_serializing_if = "SecretAttributes::is_empty")]
    pub secrets: SecretAttributes,
    /// How plan-time placement may move it between hosts ([`placement`]); `None` for
    /// everything that is not placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<placement::Rule>,
    /// Replaced whenever one of these is (Terraform's `replace_triggered_by`): a machine
    /// config with its VM, since a new VM is a new node. Its delete then runs before
    /// the host's (the node leaves its cluster while its VM still exists), its create
    /// after the host's (see `apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_with: Vec<ResourceAddr>,
}

/// Which attributes of a resource hold a secret of the configuration, and the secrets
/// themselves (never serialized) so the plan can tell which other planned attributes a
/// provider copied one into.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretAttributes {
    pub names: Vec<String>,
    #[serde(skip)]
    pub values: Vec<crate::vocabulary::Sensitive<String>>,
}

impl SecretAttributes {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Why an edge exists, for cycle errors and the DOT output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EdgeReason {
    /// The dependant's attribute `attribute` refers to `target_attribute` of the dependency.
    Reference {
        attribute: String,
        target_attribute: String,
    },
    DependsOn,
    /// A dependency recorded in state (the configuration no longer names the resource).
    Recorded,
}

impl fmt::Display for EdgeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdgeReason::Reference {
                attribute,
                target_attribute,
            } if target_attribute == OUTPUTS => {
                write!(f, "attribute `{attribute}` refers to its outputs")
            }
            EdgeReason::Reference {
                attribute,
                target_attribute,
            } => write!(f, "attribute `{attribute}` refers to `{target_attribute}`"),
            EdgeReason::DependsOn => f.write_str("depends_on"),
            EdgeReason::Recorded => f.write_str("dependency recorded in state"),
        }
    }
}

/// A vertex taken out of the graph ([`ResourceGraph::into_execution_order`]).
#[derive(Debug)]
pub struct OrderedVertex {
    pub vertex: Vertex,
    /// What must finish before it starts ([`ResourceGraph::predecessors`]).
    pub wait_for: Vec<ResourceAddr>,
    /// What it depends on in the configuration ([`ResourceGraph::dependencies`]).
    pub dependencies: Vec<ResourceAddr>,
}

/// What a vertex is.
#[derive(Debug, Clone, PartialEq)]
// Vertices live once in the graph and are never moved around: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Vertex {
    /// Named by the configuration (state may or may not know it).
    Configured(DesiredResource),
    /// Known to state only: to be deleted (what state records of it is the plan's to
    /// look up).
    Orphan { address: ResourceAddr },
    /// Under `destroy`, and recorded in state: to be deleted; `desired` when the
    /// configuration still names it.
    Destroy {
        address: ResourceAddr,
        desired: Option<DesiredResource>,
    },
}

impl Vertex {
    pub fn address(&self) -> &ResourceAddr {
        match self {
            Vertex::Configured(d) => &d.address,
            Vertex::Orphan { address } | Vertex::Destroy { address, .. } => address,
        }
    }

    /// Whether this vertex can only delete.
    pub fn is_delete(&self) -> bool {
        !matches!(self, Vertex::Configured(_))
    }
}

/// Normal planning, or `destroy` (delete everything in scope).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Normal,
    Destroy,
}

/// What to put in the graph.
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    pub mode: Mode,
    /// Only this cluster (of the state's environment).
    pub cluster: Option<String>,
    /// `--target`: these and their transitive dependencies only.
    pub targets: Vec<ResourceAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", cycle_message(.0))]
    Cycle(Vec<CycleEdge>),
    #[error("`{from}` {reason}: no resource `{to}` in the configuration")]
    MissingDependency {
        from: ResourceAddr,
        to: String,
        reason: EdgeReason,
    },
    #[error("resource `{0}` is defined twice")]
    Duplicate(ResourceAddr),
    #[error("target `{0}` matches no resource in the configuration or state")]
    UnknownTarget(ResourceAddr),
}

/// One edge of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleEdge {
    pub from: ResourceAddr,
    pub to: ResourceAddr,
    pub reason: EdgeReason,
}

fn cycle_message(edges: &[CycleEdge]) -> String {
    let mut addresses: Vec<&ResourceAddr> = edges.iter().map(|e| &e.from).collect();
    addresses.sort();
    addresses.dedup();
    let mut text = format!(
        "dependency cycle between {}:",
        addresses
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for edge in edges {
        let _ = write!(
            text,
            "\n  `{}` must come before `{}`: {}",
            edge.from, edge.to, edge.reason
        );
    }
    text.push_str("\nremove one of these references or depends_on entries");
    text
}

/// The graph. Vertices are resources; see the module documentation for edge direction.
#[derive(Debug)]
pub struct ResourceGraph {
    graph: DiGraph<Vertex, EdgeReason>,
    index: HashMap<ResourceAddr, NodeIndex>,
    /// Built for destroy: every edge reversed ([`Builder::depend`]).
    destroy: bool,
}

/// A named graph-building step.
pub struct Step {
    pub name: &'static str,
    run: fn(&mut Builder<'_>) -> Result<(), Error>,
}

/// The steps, in order.
pub const STEPS: &[Step] = &[
    Step {
        name: "add configured resources",
        run: add_configured,
    },
    Step {
        name: "add orphans from state",
        run: add_orphans,
    },
    Step {
        name: "add reference and depends_on edges",
        run: add_configured_edges,
    },
    Step {
        name: "add recorded dependencies of orphans",
        run: add_orphan_edges,
    },
    Step {
        name: "check acyclic",
        run: check_acyclic,
    },
    Step {
        name: "select targets",
        run: select_targets,
    },
];

struct Builder<'a> {
    desired: Vec<DesiredResource>,
    state: &'a dyn Recorded,
    options: &'a GraphOptions,
    graph: DiGraph<Vertex, EdgeReason>,
    index: HashMap<ResourceAddr, NodeIndex>,
}

impl Builder<'_> {
    fn in_scope(&self, addr: &ResourceAddr) -> bool {
        addr.environment == self.state.environment()
            && self
                .options
                .cluster
                .as_ref()
                .is_none_or(|c| *c == addr.cluster)
    }

    fn add_vertex(&mut self, vertex: Vertex) -> Result<(), Error> {
        let addr = vertex.address().clone();
        if self.index.contains_key(&addr) {
            return Err(Error::Duplicate(addr));
        }
        let node = self.graph.add_node(vertex);
        self.index.insert(addr, node);
        Ok(())
    }

    /// Add the edge for "`dependant` depends on `dependency`", oriented for execution.
    fn depend(&mut self, dependant: NodeIndex, dependency: NodeIndex, reason: EdgeReason) {
        // Under destroy everything is reversed, pass-through vertices (configured but
        // never created) included, so their transitive order still holds.
        let deleting = self.options.mode == Mode::Destroy || self.graph[dependant].is_delete();
        let (from, to) = if deleting {
            (dependant, dependency)
        } else {
            (dependency, dependant)
        };
        if from != to || !self.graph.contains_edge(from, to) {
            self.graph.add_edge(from, to, reason);
        }
    }
}

fn add_configured(builder: &mut Builder<'_>) -> Result<(), Error> {
    let desired = std::mem::take(&mut builder.desired);
    for resource in desired {
        if !builder.in_scope(&resource.address) {
            continue;
        }
        let vertex = match builder.options.mode {
            Mode::Normal => Vertex::Configured(resource),
            Mode::Destroy if builder.state.contains(&resource.address) => Vertex::Destroy {
                address: resource.address.clone(),
                desired: Some(resource),
            },
            // Nothing to destroy, but its edges still order what is.
            Mode::Destroy => Vertex::Configured(resource),
        };
        builder.add_vertex(vertex)?;
    }
    Ok(())
}

fn add_orphans(builder: &mut Builder<'_>) -> Result<(), Error> {
    let state = builder.state;
    for addr in state.addresses() {
        if !builder.in_scope(addr) || builder.index.contains_key(addr) {
            continue;
        }
        let vertex = match builder.options.mode {
            Mode::Normal => Vertex::Orphan {
                address: addr.clone(),
            },
            Mode::Destroy => Vertex::Destroy {
                address: addr.clone(),
                desired: None,
            },
        };
        builder.add_vertex(vertex)?;
    }
    Ok(())
}

/// Every reference marker in `value`, with the dotted path where it sits.
pub fn references_in(path: &str, value: &Value, found: &mut Vec<(String, String, String)>) {
    let mut path = path.to_string();
    references_under(&mut path, value, found);
}

/// [`references_in`] with the path in one buffer, extended and cut back as the walk goes:
/// the path is copied only where a reference sits (machine configs hold dozens of values
/// per resource, 100,000 resources a plan).
fn references_under(path: &mut String, value: &Value, found: &mut Vec<(String, String, String)>) {
    if let Some((address, attribute)) = reference_target(value) {
        found.push((path.clone(), address.to_string(), attribute.to_string()));
        return;
    }
    let length = path.len();
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                path.push('.');
                path.push_str(key);
                references_under(path, value, found);
                path.truncate(length);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                let _ = write!(path, ".{i}");
                references_under(path, value, found);
                path.truncate(length);
            }
        }
        _ => {}
    }
}

/// The addresses `value` refers to, without where (for [`ResourceGraph::dependencies`]).
fn referenced_addresses<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    if let Some((address, _)) = reference_target(value) {
        found.push(address);
        return;
    }
    match value {
        Value::Object(map) => map.values().for_each(|v| referenced_addresses(v, found)),
        Value::Array(items) => items.iter().for_each(|v| referenced_addresses(v, found)),
        _ => {}
    }
}

fn configured_dependencies(resource: &DesiredResource) -> Vec<(String, EdgeReason)> {
    let mut dependencies = Vec::new();
    for (key, value) in &resource.attributes {
        let mut found = Vec::new();
        references_in(key, value, &mut found);
        for (attribute, address, target_attribute) in found {
            dependencies.push((
                address,
                EdgeReason::Reference {
                    attribute,
                    target_attribute,
                },
            ));
        }
    }
    for dependency in &resource.depends_on {
        dependencies.push((dependency.to_string(), EdgeReason::DependsOn));
    }
    dependencies
}

fn add_configured_edges(builder: &mut Builder<'_>) -> Result<(), Error> {
    // Every configuration's references are found on every core (a walk of all the
    // fleet's attributes), then the edges are drawn here, in node order; the first
    // missing dependency in that order is the error, as on one thread.
    let nodes: Vec<NodeIndex> = builder.graph.node_indices().collect();
    let threads = if nodes.len() < NODES_WORTH_THREADS {
        1
    } else {
        crate::cores::available()
    };
    let (graph, index) = (&builder.graph, &builder.index);
    let found = crate::cores::map_runs(&nodes, threads, |run| {
        run.iter()
            .map(|&node| configured_edges(graph, index, node))
            .collect()
    });
    let mut edges = Vec::new();
    for of_node in found {
        edges.extend(of_node?);
    }
    for (dependant, dependency, reason) in edges {
        builder.depend(dependant, dependency, reason);
    }
    Ok(())
}

/// Fewer vertices than this have their references found on one thread: at 10,000 the
/// walk takes about 40 ms, and a second thread saved 20 ms of it for 3 MiB more peak
/// memory (its own heap); at 100,000 it saves 0.2 s.
const NODES_WORTH_THREADS: usize = 16 * 1024;

/// The edges `node`'s configuration asks for: (dependant, dependency, why).
fn configured_edges(
    graph: &DiGraph<Vertex, EdgeReason>,
    index: &HashMap<ResourceAddr, NodeIndex>,
    node: NodeIndex,
) -> Result<Vec<(NodeIndex, NodeIndex, EdgeReason)>, Error> {
    let desired = match &graph[node] {
        Vertex::Configured(d)
        | Vertex::Destroy {
            desired: Some(d), ..
        } => d,
        _ => return Ok(Vec::new()),
    };
    let mut edges = Vec::new();
    for (to, reason) in configured_dependencies(desired) {
        let target = to
            .parse::<ResourceAddr>()
            .ok()
            .and_then(|addr| index.get(&addr).copied())
            .filter(|t| !matches!(graph[*t], Vertex::Orphan { .. }));
        match target {
            Some(target) => edges.push((node, target, reason)),
            None => {
                return Err(Error::MissingDependency {
                    from: desired.address.clone(),
                    to,
                    reason,
                });
            }
        }
    }
    Ok(edges)
}

fn add_orphan_edges(builder: &mut Builder<'_>) -> Result<(), Error> {
    let mut edges = Vec::new();
    for node in builder.graph.node_indices() {
        let address = match &builder.graph[node] {
            Vertex::Orphan { address }
            | Vertex::Destroy {
                address,
                desired: None,
            } => address,
            _ => continue,
        };
        for dependency in builder.state.dependencies(address) {
            // A dependency that is gone from state needs no ordering.
            if let Some(&target) = builder.index.get(dependency) {
                edges.push((node, target));
            }
        }
    }
    for (dependant, dependency) in edges {
        builder.depend(dependant, dependency, EdgeReason::Recorded);
    }
    Ok(())
}

fn check_acyclic(builder: &mut Builder<'_>) -> Result<(), Error> {
    let graph = &builder.graph;
    // Kosaraju's walk keeps its own stack: Tarjan's in petgraph recurses once per
    // vertex of a chain, and a chain of some 20,000 dependencies overflowed a thread's
    // stack (an abort, not an error). Of several cycles, the one holding the least
    // address is told.
    let cycle = petgraph::algo::kosaraju_scc(graph)
        .into_iter()
        .filter(|component| component.len() > 1 || graph.contains_edge(component[0], component[0]))
        .min_by_key(|component| component.iter().map(|&n| graph[n].address()).min());
    if let Some(component) = cycle {
        let members: HashSet<NodeIndex> = component.iter().copied().collect();
        let mut edges: Vec<CycleEdge> = graph
            .edge_indices()
            .filter_map(|e| {
                let (from, to) = graph.edge_endpoints(e)?;
                (members.contains(&from) && members.contains(&to)).then(|| CycleEdge {
                    from: graph[from].address().clone(),
                    to: graph[to].address().clone(),
                    reason: graph[e].clone(),
                })
            })
            .collect();
        edges.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
        return Err(Error::Cycle(edges));
    }
    Ok(())
}

fn select_targets(builder: &mut Builder<'_>) -> Result<(), Error> {
    if builder.options.targets.is_empty() {
        return Ok(());
    }
    let mut keep = HashSet::new();
    let mut stack = Vec::new();
    for target in &builder.options.targets {
        let node = *builder
            .index
            .get(target)
            .ok_or_else(|| Error::UnknownTarget(target.clone()))?;
        stack.push(node);
    }
    while let Some(node) = stack.pop() {
        if keep.insert(node) {
            stack.extend(builder.graph.neighbors_directed(node, Direction::Incoming));
        }
    }
    builder.graph.retain_nodes(|_, node| keep.contains(&node));
    builder.index = builder
        .graph
        .node_indices()
        .map(|n| (builder.graph[n].address().clone(), n))
        .collect();
    Ok(())
}

impl ResourceGraph {
    /// Build the graph of `desired` and of what `state` knows, by [`STEPS`].
    pub fn build(
        desired: Vec<DesiredResource>,
        state: &dyn Recorded,
        options: &GraphOptions,
    ) -> Result<ResourceGraph, Error> {
        // Made at the configuration's size: grown one vertex at a time, a fleet's
        // vertices (each holding its configuration) were copied over and over.
        let vertices = desired.len();
        let mut builder = Builder {
            desired,
            state,
            options,
            graph: DiGraph::with_capacity(vertices, 0),
            index: HashMap::with_capacity(vertices),
        };
        for step in STEPS {
            tracing::trace!(step = step.name, "graph step");
            (step.run)(&mut builder)?;
        }
        Ok(ResourceGraph {
            graph: builder.graph,
            index: builder.index,
            destroy: options.mode == Mode::Destroy,
        })
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    pub fn get(&self, addr: &ResourceAddr) -> Option<&Vertex> {
        self.index.get(addr).map(|&n| &self.graph[n])
    }

    /// Vertices in an execution order (every edge respected; ties by address).
    pub fn execution_order(&self) -> Vec<&Vertex> {
        self.execution_order_nodes()
            .into_iter()
            .map(|node| &self.graph[node])
            .collect()
    }

    /// [`Self::execution_order`], the vertices moved out of the graph with what each
    /// waits for and depends on: the plan takes each resource's configuration over
    /// instead of copying it (at 100,000 resources, a copy is hundreds of MB).
    pub fn into_execution_order(self) -> Vec<OrderedVertex> {
        let order = self.execution_order_nodes();
        let edges: Vec<(Vec<ResourceAddr>, Vec<ResourceAddr>)> = order
            .iter()
            .map(|&node| {
                (
                    self.neighbors_of(node, Direction::Incoming)
                        .into_iter()
                        .cloned()
                        .collect(),
                    self.dependencies_from_edges(node),
                )
            })
            .collect();
        let (nodes, _) = self.graph.into_nodes_edges();
        let mut vertices: Vec<Option<Vertex>> = nodes.into_iter().map(|n| Some(n.weight)).collect();
        order
            .into_iter()
            .zip(edges)
            .map(|(node, (wait_for, dependencies))| OrderedVertex {
                vertex: vertices[node.index()]
                    .take()
                    .expect("the execution order holds each vertex once"),
                wait_for,
                dependencies,
            })
            .collect()
    }

    /// [`Self::dependencies`] of `node`, read from the edges [`add_configured_edges`]
    /// drew for its references and `depends_on` instead of walking its attributes
    /// again (a tenth of a second at 100,000 resources). Under destroy, targets may
    /// have removed some of a kept vertex's dependencies, whose edges point the other
    /// way there: its attributes are walked as before.
    fn dependencies_from_edges(&self, node: NodeIndex) -> Vec<ResourceAddr> {
        if self.destroy {
            return self.dependencies(self.graph[node].address());
        }
        if !matches!(self.graph[node], Vertex::Configured(_)) {
            return Vec::new();
        }
        let mut found: Vec<ResourceAddr> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .filter(|edge| {
                matches!(
                    edge.weight(),
                    EdgeReason::Reference { .. } | EdgeReason::DependsOn
                )
            })
            .map(|edge| self.graph[edge.source()].address().clone())
            .collect();
        found.sort();
        found.dedup();
        found
    }

    fn execution_order_nodes(&self) -> Vec<NodeIndex> {
        let mut remaining: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| {
                self.graph
                    .neighbors_directed(n, Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(&ResourceAddr, usize)>> =
            self.graph
                .node_indices()
                .filter(|n| remaining[n.index()] == 0)
                .map(|n| std::cmp::Reverse((self.graph[n].address(), n.index())))
                .collect();
        let mut order = Vec::with_capacity(self.graph.node_count());
        while let Some(std::cmp::Reverse((_, index))) = ready.pop() {
            let node = NodeIndex::new(index);
            order.push(node);
            for next in self.graph.neighbors_directed(node, Direction::Outgoing) {
                remaining[next.index()] -= 1;
                if remaining[next.index()] == 0 {
                    ready.push(std::cmp::Reverse((
                        self.graph[next].address(),
                        next.index(),
                    )));
                }
            }
        }
        order
    }

    /// What must finish before `addr` starts.
    pub fn predecessors(&self, addr: &ResourceAddr) -> Vec<&ResourceAddr> {
        self.neighbors(addr, Direction::Incoming)
    }

    /// What waits for `addr`.
    pub fn successors(&self, addr: &ResourceAddr) -> Vec<&ResourceAddr> {
        self.neighbors(addr, Direction::Outgoing)
    }

    fn neighbors(&self, addr: &ResourceAddr, direction: Direction) -> Vec<&ResourceAddr> {
        match self.index.get(addr) {
            Some(&node) => self.neighbors_of(node, direction),
            None => Vec::new(),
        }
    }

    /// [`Self::neighbors`] of a vertex already found.
    fn neighbors_of(&self, node: NodeIndex, direction: Direction) -> Vec<&ResourceAddr> {
        let mut found: Vec<&ResourceAddr> = self
            .graph
            .neighbors_directed(node, direction)
            .map(|n| self.graph[n].address())
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// The resources `addr` depends on in the configuration (recorded in state after
    /// apply, to order a later delete). Empty for vertices that delete.
    pub fn dependencies(&self, addr: &ResourceAddr) -> Vec<ResourceAddr> {
        match self.get(addr) {
            Some(Vertex::Configured(desired)) => {
                let mut targets = Vec::new();
                for value in desired.attributes.values() {
                    referenced_addresses(value, &mut targets);
                }
                // Each address parsed once: a machine config refers to its cluster's
                // secrets sixteen times.
                targets.sort_unstable();
                targets.dedup();
                // The same targets as `configured_dependencies`,
                // without the paths and reasons the graph's edges carry.
                let mut found: Vec<ResourceAddr> = targets
                    .into_iter()
                    .filter_map(|to| to.parse().ok())
                    .chain(desired.depends_on.iter().cloned())
                    .collect();
                found.sort();
                found.dedup();
                found
            }
            _ => Vec::new(),
        }
    }

    /// Graphviz DOT, deterministic (sorted by address). Deleting vertices are dashed.
    pub fn to_dot(&self) -> String {
        let mut nodes: Vec<NodeIndex> = self.graph.node_indices().collect();
        nodes.sort_by_key(|&n| self.graph[n].address());
        let mut text =
            String::from("digraph infraflux {\n  rankdir = \"LR\";\n  node [shape = \"box\"];\n");
        for &node in &nodes {
            let vertex = &self.graph[node];
            let style = if vertex.is_delete() {
                " [style = \"dashed\", label = \"delete\\n"
            } else {
                " [label = \""
            };
            let _ = writeln!(
                text,
                "  \"{}\"{style}{}\"];",
                vertex.address(),
                vertex.address()
            );
        }
        let mut edges: BTreeMap<(&ResourceAddr, &ResourceAddr), Vec<String>> = BTreeMap::new();
        for edge in self.graph.edge_indices() {
            let (from, to) = self.graph.edge_endpoints(edge).expect("edge has endpoints");
            let label = match &self.graph[edge] {
                EdgeReason::Reference {
                    attribute,
                    target_attribute,
                } if target_attribute == OUTPUTS => format!("{attribute} = (outputs)"),
                EdgeReason::Reference {
                    attribute,
                    target_attribute,
                } => format!("{attribute} = {target_attribute}"),
                EdgeReason::DependsOn => "depends_on".to_string(),
                EdgeReason::Recorded => "recorded".to_string(),
            };
            edges
                .entry((self.graph[from].address(), self.graph[to].address()))
                .or_default()
                .push(label);
        }
        for ((from, to), mut labels) in edges {
            labels.sort();
            labels.dedup();
            let _ = writeln!(
                text,
                "  \"{from}\" -> \"{to}\" [label = \"{}\"];",
                labels.join(", ")
            );
        }
        text.push_str("}\n");
        text
    }
}

#[cfg(test)]
pub(crate) mod tests;
