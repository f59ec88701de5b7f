//! Overlay metrics: the shape of the active-view graph at one instant.
//!
//! [`analyse`] takes, for every node, whether it is alive and which node
//! indices its active view lists, and measures the overlay the way the
//! HyParView paper evaluates it (Leitão, Pereira, Rodrigues, DSN 2007, §5):
//! isolated nodes, active-view size distribution, view symmetry, connected
//! components, clustering coefficient and average shortest path.
//!
//! Two graphs are involved, both over alive nodes only:
//! - the *directed* graph `i -> j` for every alive `j` in alive `i`'s active
//!   view (view sizes, isolation, symmetry);
//! - the *undirected* graph `i — j` when either lists the other (components,
//!   clustering, paths).
//!
//! Dead peers, peer indices out of range, duplicates and self-loops are
//! ignored. The result is a pure function of the inputs and the seed: no
//! hash-map iteration, sorted adjacency, and the BFS sources are drawn from a
//! seeded ChaCha stream over the sorted members of the largest component.
//! Every `f64` is rounded to 6 decimals, and an empty input gives zeros,
//! never NaN, so reports serialise to the same bytes every time.
//!
//! Cost: O(V + E log E) to build, O(E^1.5) for triangles (degree-ordered
//! enumeration, so hubs stay cheap), O(sources · (V + E)) at
//! worst for paths, usually far less (bit-parallel BFS, 64 sources a pass).

use petgraph::csr::Csr;
use petgraph::unionfind::UnionFind;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Overlay metrics of the active-view graph at one instant.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OverlayReport {
    pub nodes_alive: usize,
    /// alive nodes with no alive active peer (an active view holding no alive
    /// node other than itself)
    pub isolated: usize,
    /// active view size (count of distinct alive peers in each alive node's
    /// active view) -> number of nodes, sorted by size
    pub active_view_sizes: Vec<SizeCount>,
    pub active_view_mean: f64,
    /// fraction of directed active-view edges (between alive nodes) whose
    /// reverse edge exists too
    pub symmetry: f64,
    /// connected components of the undirected graph over alive nodes
    /// (isolated nodes count as components)
    pub components: usize,
    /// size of the largest component, and as a fraction of alive nodes
    pub largest_component: usize,
    pub largest_component_fraction: f64,
    /// average local clustering coefficient over alive nodes with
    /// degree >= 2 (undirected graph)
    pub clustering_coefficient: f64,
    /// average shortest path length (hops) in the largest component,
    /// estimated by BFS from `path_sources` sources drawn with the given seed
    /// (all members if fewer); and the largest distance seen (a lower bound
    /// of the diameter)
    pub average_shortest_path: f64,
    /// number of BFS sources actually used
    pub path_sources: usize,
    pub max_distance_seen: usize,
    /// How long running hosts stayed with an empty active view over the
    /// run, and whether their peer cache held a live way back: measured
    /// from node events by the recorder, not from this instant's graph
    /// (which [`analyse`] leaves at its default).
    pub isolation: crate::isolation::IsolationReport,
}

/// One bucket of the active-view size distribution.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SizeCount {
    pub size: usize,
    pub nodes: usize,
}

/// Symmetric adjacency over alive nodes (compact indices), both directions
/// stored, neighbours sorted.
type Undirected = Csr<(), (), petgraph::Directed, u32>;

/// Measures the overlay. `alive[i]` says whether node i is alive; `active[i]`
/// lists the node indices in i's active view (may include dead nodes,
/// out-of-range indices, duplicates and self-loops: all ignored). Edges for
/// the undirected graph: i—j if either lists the other, both alive.
///
/// Panics if `alive` and `active` differ in length or hold more than
/// `u32::MAX` nodes.
pub fn analyse(
    alive: &[bool],
    active: &[Vec<u32>],
    path_sources: usize,
    seed: u64,
) -> OverlayReport {
    assert_eq!(
        alive.len(),
        active.len(),
        "alive and active must describe the same nodes"
    );
    assert!(
        u32::try_from(alive.len()).is_ok(),
        "node indices must fit in u32"
    );

    // Compact index per alive node, in ascending order of original index.
    let mut compact = vec![u32::MAX; alive.len()];
    let mut nodes_alive = 0u32;
    for (slot, _) in compact.iter_mut().zip(alive).filter(|(_, &a)| a) {
        *slot = nodes_alive;
        nodes_alive += 1;
    }
    let n = nodes_alive as usize;
    if n == 0 {
        return OverlayReport::empty();
    }

    let views = DirectedViews::new(alive, active, &compact);
    let (isolated, active_view_sizes, active_view_mean) = views.sizes();
    let symmetry = views.symmetry();

    let graph = views.undirected();
    let components = Components::new(&graph);
    let clustering_coefficient = clustering(&graph);
    let paths = shortest_paths(&graph, &components.largest_members(), path_sources, seed);

    OverlayReport {
        nodes_alive: n,
        isolated,
        active_view_sizes,
        active_view_mean: round6(active_view_mean),
        symmetry: round6(symmetry),
        components: components.count,
        largest_component: components.largest_size,
        largest_component_fraction: round6(components.largest_size as f64 / n as f64),
        clustering_coefficient: round6(clustering_coefficient),
        average_shortest_path: round6(paths.average),
        path_sources: paths.sources,
        max_distance_seen: paths.max_distance,
        isolation: Default::default(),
    }
}

impl OverlayReport {
    fn empty() -> Self {
        OverlayReport {
            nodes_alive: 0,
            isolated: 0,
            active_view_sizes: Vec::new(),
            active_view_mean: 0.0,
            symmetry: 0.0,
            components: 0,
            largest_component: 0,
            largest_component_fraction: 0.0,
            clustering_coefficient: 0.0,
            average_shortest_path: 0.0,
            path_sources: 0,
            max_distance_seen: 0,
            isolation: Default::default(),
        }
    }
}

/// Rounds to 6 decimals so reports are stable and readable; NaN becomes 0.
fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6
    } else {
        0.0
    }
}

/// The directed active-view graph over alive nodes, compact indices, each
/// row sorted and deduplicated.
struct DirectedViews {
    /// `row[i]..row[i + 1]` is node i's slice of `column`.
    row: Vec<usize>,
    column: Vec<u32>,
}

impl DirectedViews {
    fn new(alive: &[bool], active: &[Vec<u32>], compact: &[u32]) -> Self {
        let mut row = vec![0];
        let mut column = Vec::new();
        for (i, view) in active.iter().enumerate().filter(|&(i, _)| alive[i]) {
            let start = column.len();
            let me = compact[i];
            column.extend(
                view.iter()
                    .filter_map(|&peer| compact.get(peer as usize).copied())
                    .filter(|&peer| peer != u32::MAX && peer != me),
            );
            column[start..].sort_unstable();
            let unique = dedup_sorted(&mut column[start..]);
            column.truncate(start + unique);
            row.push(column.len());
        }
        DirectedViews { row, column }
    }

    fn len(&self) -> usize {
        self.row.len() - 1
    }

    fn peers(&self, node: usize) -> &[u32] {
        &self.column[self.row[node]..self.row[node + 1]]
    }

    /// (isolated, size distribution, mean size)
    fn sizes(&self) -> (usize, Vec<SizeCount>, f64) {
        let mut counts: Vec<usize> = Vec::new();
        for node in 0..self.len() {
            let size = self.peers(node).len();
            if counts.len() <= size {
                counts.resize(size + 1, 0);
            }
            counts[size] += 1;
        }
        let isolated = counts.first().copied().unwrap_or(0);
        let distribution = counts
            .iter()
            .enumerate()
            .filter(|&(_, &nodes)| nodes > 0)
            .map(|(size, &nodes)| SizeCount { size, nodes })
            .collect();
        let mean = self.column.len() as f64 / self.len() as f64;
        (isolated, distribution, mean)
    }

    fn symmetry(&self) -> f64 {
        if self.column.is_empty() {
            return 0.0;
        }
        let mut reciprocated = 0usize;
        for node in 0..self.len() {
            let me = node as u32;
            reciprocated += self
                .peers(node)
                .iter()
                .filter(|&&peer| self.peers(peer as usize).binary_search(&me).is_ok())
                .count();
        }
        reciprocated as f64 / self.column.len() as f64
    }

    /// The undirected graph: i—j if either lists the other.
    fn undirected(&self) -> Undirected {
        let mut edges: Vec<(u32, u32)> = Vec::with_capacity(2 * self.column.len());
        for node in 0..self.len() {
            let me = node as u32;
            for &peer in self.peers(node) {
                edges.push((me, peer));
                edges.push((peer, me));
            }
        }
        edges.sort_unstable();
        edges.dedup();
        let mut graph =
            Undirected::from_sorted_edges(&edges).expect("edges were sorted and deduplicated");
        while graph.node_count() < self.len() {
            graph.add_node(());
        }
        graph
    }
}

/// Moves the distinct values of a sorted slice to its front; returns how many.
fn dedup_sorted(values: &mut [u32]) -> usize {
    if values.is_empty() {
        return 0;
    }
    let mut unique = 1;
    for i in 1..values.len() {
        if values[i] != values[unique - 1] {
            values[unique] = values[i];
            unique += 1;
        }
    }
    unique
}

/// Connected components of the undirected graph.
struct Components {
    /// Representative of each node's component.
    labels: Vec<u32>,
    count: usize,
    /// Representative of the largest component (ties: the one holding the
    /// lowest node index).
    largest: u32,
    largest_size: usize,
}

impl Components {
    fn new(graph: &Undirected) -> Self {
        let n = graph.node_count();
        let mut union_find = UnionFind::<u32>::new(n);
        for node in 0..n as u32 {
            for &peer in graph.neighbors_slice(node) {
                if node < peer {
                    union_find.union(node, peer);
                }
            }
        }
        let labels = union_find.into_labeling();
        let mut sizes = vec![0usize; n];
        for &label in &labels {
            sizes[label as usize] += 1;
        }
        let count = sizes.iter().filter(|&&size| size > 0).count();
        let mut largest = 0;
        let mut largest_size = 0;
        for &label in &labels {
            if sizes[label as usize] > largest_size {
                largest = label;
                largest_size = sizes[label as usize];
            }
        }
        Components {
            labels,
            count,
            largest,
            largest_size,
        }
    }

    /// Members of the largest component, ascending.
    fn largest_members(&self) -> Vec<u32> {
        (0..self.labels.len() as u32)
            .filter(|&node| self.labels[node as usize] == self.largest)
            .collect()
    }
}

/// Average local clustering coefficient over nodes of degree >= 2.
///
/// Triangles are enumerated once each by orienting every edge from the
/// lower to the higher (degree, index) rank and intersecting forward lists,
/// which bounds the work by O(E^1.5) whatever the degree distribution.
fn clustering(graph: &Undirected) -> f64 {
    let n = graph.node_count();
    let degree = |node: u32| graph.neighbors_slice(node).len();
    let ranks_before = |a: u32, b: u32| (degree(a), a) < (degree(b), b);

    let mut forward_row = Vec::with_capacity(n + 1);
    let mut forward = Vec::new();
    forward_row.push(0);
    for node in 0..n as u32 {
        forward.extend(
            graph
                .neighbors_slice(node)
                .iter()
                .copied()
                .filter(|&peer| ranks_before(node, peer)),
        );
        forward_row.push(forward.len());
    }
    let forward_of =
        |node: u32| &forward[forward_row[node as usize]..forward_row[node as usize + 1]];

    let mut triangles = vec![0u64; n];
    let mut marked_by = vec![u32::MAX; n];
    for u in 0..n as u32 {
        for &v in forward_of(u) {
            marked_by[v as usize] = u;
        }
        for &v in forward_of(u) {
            for &w in forward_of(v) {
                if marked_by[w as usize] == u {
                    triangles[u as usize] += 1;
                    triangles[v as usize] += 1;
                    triangles[w as usize] += 1;
                }
            }
        }
    }

    let mut sum = 0.0;
    let mut counted = 0usize;
    for node in 0..n as u32 {
        let k = degree(node) as u64;
        if k >= 2 {
            sum += (2 * triangles[node as usize]) as f64 / (k * (k - 1)) as f64;
            counted += 1;
        }
    }
    if counted == 0 {
        0.0
    } else {
        sum / counted as f64
    }
}

struct PathStats {
    average: f64,
    sources: usize,
    max_distance: usize,
}

/// Hop distances from sampled members of one component (`members`
/// ascending) to every other member.
///
/// Bit-parallel multi-source BFS (Then et al., "The More the Merrier:
/// Efficient Multi-Source Graph Traversal", PVLDB 8(4), 2014): up to 64 sources share one traversal, one bit each, so a
/// node reached at the same depth from many sources is expanded once.
fn shortest_paths(
    graph: &Undirected,
    members: &[u32],
    path_sources: usize,
    seed: u64,
) -> PathStats {
    let sources: Vec<u32> = if path_sources >= members.len() {
        members.to_vec()
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut picked = rand::seq::index::sample(&mut rng, members.len(), path_sources).into_vec();
        picked.sort_unstable();
        picked.into_iter().map(|i| members[i]).collect()
    };

    let n = graph.node_count();
    // Per node, one bit per source of the current batch.
    let mut seen = vec![0u64; n];
    let mut frontier = vec![0u64; n];
    let mut next = vec![0u64; n];
    let mut frontier_nodes: Vec<u32> = Vec::new();
    let mut next_nodes: Vec<u32> = Vec::new();
    let mut total: u64 = 0;
    let mut max_distance = 0u32;
    for batch in sources.chunks(64) {
        frontier_nodes.clear();
        for (bit, &source) in batch.iter().enumerate() {
            seen[source as usize] = 1 << bit;
            frontier[source as usize] = 1 << bit;
            frontier_nodes.push(source);
        }
        let mut depth = 0u32;
        while !frontier_nodes.is_empty() {
            depth += 1;
            next_nodes.clear();
            for &node in &frontier_nodes {
                let reaching = frontier[node as usize];
                for &peer in graph.neighbors_slice(node) {
                    let new = reaching & !seen[peer as usize];
                    if new != 0 {
                        if next[peer as usize] == 0 {
                            next_nodes.push(peer);
                        }
                        next[peer as usize] |= new;
                    }
                }
            }
            for &node in &frontier_nodes {
                frontier[node as usize] = 0;
            }
            for &node in &next_nodes {
                let arrived = std::mem::take(&mut next[node as usize]);
                seen[node as usize] |= arrived;
                frontier[node as usize] = arrived;
                total += u64::from(arrived.count_ones()) * u64::from(depth);
            }
            if !next_nodes.is_empty() {
                max_distance = max_distance.max(depth);
            }
            std::mem::swap(&mut frontier_nodes, &mut next_nodes);
        }
        seen.fill(0);
    }

    let pairs = sources.len() as u64 * (members.len() as u64).saturating_sub(1);
    PathStats {
        average: if pairs == 0 {
            0.0
        } else {
            total as f64 / pairs as f64
        },
        sources: sources.len(),
        max_distance: max_distance as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_alive(n: usize) -> Vec<bool> {
        vec![true; n]
    }

    fn ring(n: u32) -> Vec<Vec<u32>> {
        (0..n).map(|i| vec![(i + n - 1) % n, (i + 1) % n]).collect()
    }

    fn complete(n: u32) -> Vec<Vec<u32>> {
        (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect()
    }

    #[test]
    fn ring_of_ten() {
        let report = analyse(&all_alive(10), &ring(10), 100, 7);
        assert_eq!(report.nodes_alive, 10);
        assert_eq!(report.isolated, 0);
        assert_eq!(
            report.active_view_sizes,
            vec![SizeCount { size: 2, nodes: 10 }]
        );
        assert_eq!(report.active_view_mean, 2.0);
        assert_eq!(report.symmetry, 1.0);
        assert_eq!(report.components, 1);
        assert_eq!(report.largest_component, 10);
        assert_eq!(report.largest_component_fraction, 1.0);
        assert_eq!(report.clustering_coefficient, 0.0);
        assert_eq!(report.path_sources, 10);
        assert_eq!(report.average_shortest_path, 2.777778); // 25 / 9
        assert_eq!(report.max_distance_seen, 5);
    }

    #[test]
    fn ring_sampled_sources_are_seeded() {
        let a = analyse(&all_alive(1000), &ring(1000), 8, 42);
        let b = analyse(&all_alive(1000), &ring(1000), 8, 42);
        assert_eq!(a, b);
        assert_eq!(a.path_sources, 8);
        // Every node of a ring sees the same distances.
        assert_eq!(a.average_shortest_path, round6(250_000.0 / 999.0));
        assert_eq!(a.max_distance_seen, 500);
    }

    #[test]
    fn complete_graph_k5() {
        let report = analyse(&all_alive(5), &complete(5), 64, 1);
        assert_eq!(report.clustering_coefficient, 1.0);
        assert_eq!(report.average_shortest_path, 1.0);
        assert_eq!(report.max_distance_seen, 1);
        assert_eq!(report.components, 1);
        assert_eq!(report.symmetry, 1.0);
        assert_eq!(
            report.active_view_sizes,
            vec![SizeCount { size: 4, nodes: 5 }]
        );
    }

    #[test]
    fn two_disjoint_triangles() {
        let active = vec![
            vec![1, 2],
            vec![0, 2],
            vec![0, 1],
            vec![4, 5],
            vec![3, 5],
            vec![3, 4],
        ];
        let report = analyse(&all_alive(6), &active, 64, 1);
        assert_eq!(report.components, 2);
        assert_eq!(report.largest_component, 3);
        assert_eq!(report.largest_component_fraction, 0.5);
        assert_eq!(report.clustering_coefficient, 1.0);
        assert_eq!(report.path_sources, 3);
        assert_eq!(report.average_shortest_path, 1.0);
    }

    #[test]
    fn dead_nodes_are_excluded() {
        // Ring of 10 with node 0 dead: a path of 9 nodes, 1..=9.
        let mut alive = all_alive(10);
        alive[0] = false;
        let report = analyse(&alive, &ring(10), 64, 3);
        assert_eq!(report.nodes_alive, 9);
        assert_eq!(report.components, 1);
        assert_eq!(report.largest_component, 9);
        assert_eq!(
            report.active_view_sizes,
            vec![
                SizeCount { size: 1, nodes: 2 },
                SizeCount { size: 2, nodes: 7 }
            ]
        );
        assert_eq!(report.active_view_mean, round6(16.0 / 9.0));
        assert_eq!(report.symmetry, 1.0);
        // Path of 9: sum over ordered pairs of |i - j| = 240, over 72 pairs.
        assert_eq!(report.average_shortest_path, round6(240.0 / 72.0));
        assert_eq!(report.max_distance_seen, 8);
    }

    #[test]
    fn isolated_nodes_and_noise_in_views() {
        // 0-1 linked; 2 lists only itself, a duplicate-free dead node and an
        // out-of-range index; 3 is dead; 4 lists nothing.
        let alive = vec![true, true, true, false, true];
        let active = vec![
            vec![1, 1, 0],
            vec![0, 3],
            vec![2, 3, 99],
            vec![0, 1],
            vec![],
        ];
        let report = analyse(&alive, &active, 64, 9);
        assert_eq!(report.nodes_alive, 4);
        assert_eq!(report.isolated, 2);
        assert_eq!(
            report.active_view_sizes,
            vec![
                SizeCount { size: 0, nodes: 2 },
                SizeCount { size: 1, nodes: 2 }
            ]
        );
        assert_eq!(report.active_view_mean, 0.5);
        assert_eq!(report.components, 3);
        assert_eq!(report.largest_component, 2);
        assert_eq!(report.largest_component_fraction, 0.5);
        assert_eq!(report.clustering_coefficient, 0.0);
        assert_eq!(report.average_shortest_path, 1.0);
    }

    #[test]
    fn asymmetric_edges_lower_symmetry() {
        // 0 <-> 1 both ways, 1 -> 2 and 2 -> 0 one way each.
        let active = vec![vec![1], vec![0, 2], vec![0]];
        let report = analyse(&all_alive(3), &active, 64, 5);
        assert_eq!(report.symmetry, 0.5);
        // Undirected it is a triangle.
        assert_eq!(report.clustering_coefficient, 1.0);
        assert_eq!(report.components, 1);
    }

    #[test]
    fn empty_and_all_dead_give_zeros() {
        let empty = analyse(&[], &[], 64, 0);
        assert_eq!(empty, OverlayReport::empty());
        let dead = analyse(&[false, false], &[vec![1], vec![0]], 64, 0);
        assert_eq!(dead, OverlayReport::empty());
        let lone = analyse(&[true], &[vec![]], 64, 0);
        assert_eq!(lone.components, 1);
        assert_eq!(lone.isolated, 1);
        assert_eq!(lone.largest_component_fraction, 1.0);
        assert_eq!(lone.average_shortest_path, 0.0);
        assert_eq!(lone.symmetry, 0.0);
        assert!(serde_json::to_string(&lone).is_ok());
    }

    #[test]
    fn clustering_of_a_hub_is_cheap_and_right() {
        // A star with one extra edge between two leaves: the hub sees one
        // triangle among C(n-1, 2) pairs; the two linked leaves score 1.
        let n = 2000u32;
        let mut active: Vec<Vec<u32>> = (0..n).map(|_| vec![0]).collect();
        active[0] = (1..n).collect();
        active[1].push(2);
        let report = analyse(&all_alive(n as usize), &active, 4, 11);
        let hub = 2.0 / f64::from((n - 1) * (n - 2));
        assert_eq!(report.clustering_coefficient, round6((hub + 2.0) / 3.0));
    }

    #[test]
    fn batched_bfs_matches_one_bfs_per_source() {
        use rand::Rng;
        let n = 300u32;
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let active: Vec<Vec<u32>> = (0..n)
            .map(|_| (0..2).map(|_| rng.gen_range(0..n)).collect())
            .collect();
        let alive = all_alive(n as usize);
        let report = analyse(&alive, &active, usize::MAX, 0);

        // Reference: plain BFS from every node of the largest component.
        let compact: Vec<u32> = (0..n).collect();
        let graph = DirectedViews::new(&alive, &active, &compact).undirected();
        let members = Components::new(&graph).largest_members();
        let (mut total, mut max) = (0usize, 0usize);
        for &source in &members {
            let mut distance = vec![usize::MAX; n as usize];
            distance[source as usize] = 0;
            let mut queue = std::collections::VecDeque::from([source]);
            while let Some(node) = queue.pop_front() {
                for &peer in graph.neighbors_slice(node) {
                    if distance[peer as usize] == usize::MAX {
                        distance[peer as usize] = distance[node as usize] + 1;
                        total += distance[peer as usize];
                        max = max.max(distance[peer as usize]);
                        queue.push_back(peer);
                    }
                }
            }
        }
        let pairs = members.len() * (members.len() - 1);
        assert!(members.len() > 128, "several batches of 64 are exercised");
        assert_eq!(report.path_sources, members.len());
        assert_eq!(
            report.average_shortest_path,
            round6(total as f64 / pairs as f64)
        );
        assert_eq!(report.max_distance_seen, max);
    }
}
