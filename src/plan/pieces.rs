//! The plan's graph in pieces, planned on the machine's cores.
//!
//! The pieces are the parts of the graph no edge joins: a fleet's clusters. Each is
//! planned in execution order on one thread ([`parallel`]), so every vertex sees what
//! it would if the whole graph were planned in that order: everything it waits for is
//! in its piece and planned before it, and it reads nothing else (README: Performance).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Change, Error, PlanOptions, Schemas, Unknown, parallel, plan_vertex};
use crate::graph::{OrderedVertex, ResourceGraph, Vertex};
use crate::registry::ProviderRegistry;
use crate::state::StateDocument;
use crate::state::by_reference::MarkerReads;
use crate::vocabulary::ResourceAddr;
use infraflux_provider::Attributes;

/// The changes of every vertex, in execution order, but those left unknown: a resource
/// in `unreachable`, and one that waits for an unknown one (so it never runs on values
/// nobody could read).
///
/// The error is the one the execution order meets first: each piece stops at its first
/// error, and at any position after an error another piece found (so a failure every
/// cluster shares costs a few attempts, not one per cluster); the earliest is returned.
///
/// A piece is planned whole, in its own order, rather than the graph a depth at a time
/// across pieces: its configuration was loaded together and is freed together, so the
/// memory it leaves is reused by what comes next (by depth, a 10,000-resource create
/// plan took 16 MiB more).
pub(super) async fn plan_changes(
    graph: ResourceGraph,
    current: &StateDocument,
    recorded: &StateDocument,
    providers: &ProviderRegistry,
    schemas: &Schemas,
    options: &PlanOptions,
    unreachable: &BTreeMap<ResourceAddr, String>,
) -> Result<(Vec<Change>, Vec<Unknown>), Error> {
    let order = graph.into_execution_order();
    // By the address's canonical text, the form references carry: looked up without
    // parsing an address per reference.
    let positions: HashMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(position, ordered)| (ordered.vertex.address().to_string(), position))
        .collect();
    let count = order.len();
    let pieces = pieces(order);
    let outcomes: Vec<OnceLock<Outcome>> =
        std::iter::repeat_with(OnceLock::new).take(count).collect();
    let context = PieceContext {
        outcomes: &outcomes,
        first_error: AtomicUsize::new(usize::MAX),
        positions: &positions,
        schemas,
        current,
        recorded,
        providers,
        options,
        unreachable,
    };
    let threads = if count < MIN_RESOURCES_FOR_THREADS {
        1
    } else {
        parallel::threads(options.threads)
    };
    let errors = parallel::map(pieces, threads, async |piece| {
        plan_piece(piece, &context).await
    })
    .await;
    if let Some((_, error)) = errors
        .into_iter()
        .flatten()
        .min_by_key(|(position, _)| *position)
    {
        return Err(error);
    }
    let mut changes = Vec::with_capacity(count);
    let mut unknown = Vec::new();
    for outcome in outcomes.into_iter().filter_map(OnceLock::into_inner) {
        match outcome {
            Outcome::Planned(change) => changes.push(*change),
            Outcome::Unknown(u) => unknown.push(u),
        }
    }
    Ok((changes, unknown))
}

/// Fewer resources than this are planned on one thread: starting threads costs more
/// than it saves.
pub(super) const MIN_RESOURCES_FOR_THREADS: usize = 256;

/// What a piece read of recorded resources for its vertices, kept while it plans: a
/// cluster's machine configs each take its secrets, by their configuration's reference
/// and by their record's marker, and each read parsed (and, for a marker, digested) the
/// same bundle again. State does not change while a plan runs.
#[derive(Debug, Default)]
pub(super) struct PieceReads {
    /// Markers resolved ([`StateDocument::resolve_owned_with`]).
    pub markers: MarkerReads,
    /// What a reference to an attribute of a recorded resource read of its record
    /// ([`super::resolve::recorded_for_reference`]), by address and attribute.
    pub for_reference: HashMap<(ResourceAddr, String), Attributes>,
}

/// What planning a vertex came to.
pub(super) enum Outcome {
    Planned(Box<Change>),
    Unknown(Unknown),
}

/// A piece of the graph no edge joins to another: its vertices (with their positions
/// in the execution order), in execution order.
struct Piece {
    vertices: Vec<(usize, OrderedVertex)>,
}

/// The graph's pieces, in the execution order of their first vertices. Hosts a
/// resource is replaced with count as edges: the plan reads whether they are replaced.
fn pieces(order: Vec<OrderedVertex>) -> Vec<Piece> {
    let index: HashMap<&ResourceAddr, usize> = order
        .iter()
        .enumerate()
        .map(|(position, ordered)| (ordered.vertex.address(), position))
        .collect();
    let mut parent: Vec<usize> = (0..order.len()).collect();
    fn root(parent: &mut [usize], mut at: usize) -> usize {
        while parent[at] != at {
            parent[at] = parent[parent[at]];
            at = parent[at];
        }
        at
    }
    for (position, ordered) in order.iter().enumerate() {
        let hosts = match &ordered.vertex {
            Vertex::Configured(desired) => desired.replace_with.as_slice(),
            _ => &[],
        };
        for before in ordered.wait_for.iter().chain(hosts) {
            if let Some(&other) = index.get(before) {
                let (a, b) = (root(&mut parent, position), root(&mut parent, other));
                // The earlier vertex is the root, so a piece is named by its first.
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    drop(index);
    let mut pieces: Vec<Piece> = Vec::new();
    let mut piece_of_root: HashMap<usize, usize> = HashMap::new();
    for (position, ordered) in order.into_iter().enumerate() {
        let first = root(&mut parent, position);
        let piece = *piece_of_root.entry(first).or_insert_with(|| {
            pieces.push(Piece {
                vertices: Vec::new(),
            });
            pieces.len() - 1
        });
        pieces[piece].vertices.push((position, ordered));
    }
    pieces
}

/// What every piece's planning reads, and where it puts its outcomes (by execution-order
/// position; each piece sets only its own).
pub(super) struct PieceContext<'a> {
    outcomes: &'a [OnceLock<Outcome>],
    /// The earliest position an error was found at so far (`usize::MAX`: none).
    first_error: AtomicUsize,
    positions: &'a HashMap<String, usize>,
    pub(super) schemas: &'a Schemas,
    pub(super) current: &'a StateDocument,
    pub(super) recorded: &'a StateDocument,
    pub(super) providers: &'a ProviderRegistry,
    pub(super) options: &'a PlanOptions,
    pub(super) unreachable: &'a BTreeMap<ResourceAddr, String>,
}

impl PieceContext<'_> {
    /// The planned change of the resource whose address reads `address`, if it is
    /// planned (a piece reads only its own, planned before).
    pub(super) fn change(&self, address: &str) -> Option<&Change> {
        match self.outcomes[*self.positions.get(address)?].get()? {
            Outcome::Planned(change) => Some(change),
            Outcome::Unknown(_) => None,
        }
    }
}

/// Plan a piece in execution order; its first error (and its position), if any.
async fn plan_piece(piece: Piece, context: &PieceContext<'_>) -> Option<(usize, Error)> {
    let mut left_out: HashSet<ResourceAddr> = HashSet::new();
    let mut reads = PieceReads::default();
    for (position, ordered) in piece.vertices {
        if position > context.first_error.load(Ordering::Relaxed) {
            // An earlier error ends the plan: what comes after it is never used.
            return None;
        }
        match plan_vertex(ordered, context, &left_out, &mut reads).await {
            Ok(outcome) => {
                if let Outcome::Unknown(unknown) = &outcome {
                    left_out.insert(unknown.address.clone());
                }
                let fresh = context.outcomes[position].set(outcome).is_ok();
                debug_assert!(fresh, "position {position} is planned once, by its piece");
            }
            Err(error) => {
                context.first_error.fetch_min(position, Ordering::Relaxed);
                return Some((position, error));
            }
        }
    }
    None
}
