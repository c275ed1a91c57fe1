//! Which blocks to fetch ahead of SQLite's reads, in the same parallel batch as the block
//! it waits for. SQLite reads one page at a time, so without this a cold scan costs one
//! round trip per page. Two detectors, both silent for a point query:
//!
//! - **B-tree.** When SQLite reads an interior b-tree page (type 0x05 table or 0x02
//!   index, at offset 0, or 100 on page 1) its children are remembered, for a few interior
//!   pages at once (nested levels, joins, an index and its table). When SQLite then reads
//!   two *consecutive* children of one of them, it is scanning across them: the children
//!   that follow (in the scan's direction) are fetched in batches that double from
//!   twice the concurrency, bounded by a quarter of the block cache. A point query reads
//!   one child per interior page and never triggers it; random lookups into a table (an
//!   index scan's row fetches) rarely hit consecutive children.
//! - **Streams.** Reads that are not b-tree steps (overflow chains written in order, a
//!   journal's playback, leaves allocated in order) feed a few independent forward
//!   streams, each tolerating small gaps; a stream reads ahead only after three reads in
//!   it, and its window doubles while it lasts. Block 0 (the header every transaction
//!   reads) is never part of a stream.
//!
//! Everything here is a guess about the future: it never changes what a read returns.

/// Interior pages remembered at once.
const INTERIORS: usize = 16;
/// Independent sequential streams tracked at once.
const STREAMS: usize = 8;
/// Blocks a stream may skip between two of its reads.
const GAP: u64 = 4;
/// Largest stream window, in blocks.
const MAX_WINDOW: u64 = 256;

/// How blocks and the cache are laid out for one file.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub block_size: u64,
    /// Blocks in the file, when its size is known: nothing past it is fetched.
    pub blocks: Option<u64>,
    /// Requests one batch may have in flight.
    pub concurrency: usize,
    /// Most blocks fetched ahead in one batch (a quarter of the cache).
    pub budget: u64,
}

struct Interior {
    page: u32,
    children: Vec<u32>,
    /// Position of the child read last, the scan's direction (+1 forward, -1 backward),
    /// how far ahead (in the scan's order) children were fetched, and the next batch size.
    last: Option<usize>,
    dir: i8,
    ahead: usize,
    batch: usize,
    used: u64,
    /// The direction of a scan that reached this page as a step across the children of a
    /// remembered interior page (0 if none): a scan of the tree goes on through its
    /// children from the first one, so that first read already fetches ahead.
    inherit: i8,
}

struct Stream {
    last: u64,
    steps: u32,
    window: u64,
    ahead_until: u64,
    used: u64,
}

/// The prefetch state of one open file (one connection's view).
#[derive(Default)]
pub struct Prefetcher {
    interiors: Vec<Interior>,
    streams: Vec<Stream>,
    tick: u64,
    /// Whether reads are SQLite database pages (b-tree pages can be parsed).
    pub btree: bool,
}

/// The page number of a read of a whole page, if it is one.
fn page_of(off: u64, len: usize) -> Option<u32> {
    let len = len as u64;
    (len.is_power_of_two() && (512..=65536).contains(&len) && off.is_multiple_of(len))
        .then(|| u32::try_from(off / len + 1).ok())
        .flatten()
}

/// The children of an interior b-tree page, in key order; `None` for any other page.
pub fn interior_children(page: &[u8], page_no: u32) -> Option<Vec<u32>> {
    let h = if page_no == 1 { 100 } else { 0 };
    if page.len() < h + 12 || !matches!(page[h], 0x02 | 0x05) {
        return None;
    }
    let be16 = |o: usize| usize::from(u16::from_be_bytes([page[o], page[o + 1]]));
    let be32 = |o: usize| u32::from_be_bytes([page[o], page[o + 1], page[o + 2], page[o + 3]]);
    let cells = be16(h + 3);
    if h + 12 + 2 * cells > page.len() {
        return None;
    }
    let mut children = Vec::with_capacity(cells + 1);
    for i in 0..cells {
        let at = be16(h + 12 + 2 * i);
        if at + 4 > page.len() {
            return None;
        }
        children.push(be32(at));
    }
    children.push(be32(h + 8));
    children.iter().all(|&c| c > 0).then_some(children)
}

impl Prefetcher {
    /// Forgets the position of every scan (a new read transaction); with `changed`, the
    /// remembered interior pages too (another writer may have changed them).
    pub fn reset(&mut self, changed: bool) {
        self.streams.clear();
        if changed {
            self.interiors.clear();
        }
        for i in &mut self.interiors {
            i.last = None;
            i.dir = 0;
            i.inherit = 0;
        }
    }

    /// Learns from a page SQLite just read: remembers it if it is an interior page.
    pub fn observe(&mut self, off: u64, buf: &[u8]) {
        if !self.btree {
            return;
        }
        let Some(page) = page_of(off, buf.len()) else {
            return;
        };
        let children = interior_children(buf, page);
        let known = self.interiors.iter().position(|i| i.page == page);
        match (children, known) {
            (None, Some(k)) => {
                self.interiors.remove(k);
            }
            (None, None) => {}
            (Some(children), Some(k)) if self.interiors[k].children == children => {
                self.tick += 1;
                self.interiors[k].used = self.tick;
            }
            (Some(children), known) => {
                if let Some(k) = known {
                    self.interiors.remove(k);
                }
                if self.interiors.len() >= INTERIORS {
                    let oldest = (0..self.interiors.len())
                        .min_by_key(|&k| self.interiors[k].used)
                        .unwrap_or(0);
                    self.interiors.remove(oldest);
                }
                // Reached by a scan across a parent's children (a deeper tree's next
                // interior page): its children will be scanned too.
                let inherit = self
                    .interiors
                    .iter()
                    .filter(|i| i.dir != 0 && i.children.contains(&page))
                    .max_by_key(|i| i.used)
                    .map_or(0, |i| i.dir);
                self.tick += 1;
                self.interiors.push(Interior {
                    page,
                    children,
                    last: None,
                    dir: 0,
                    ahead: 0,
                    batch: 0,
                    used: self.tick,
                    inherit,
                });
            }
        }
    }

    /// The blocks to fetch ahead of a read of `len` bytes at `off` (blocks
    /// `first..=last`).
    pub fn plan(&mut self, off: u64, len: usize, first: u64, last: u64, g: Geometry) -> Vec<u64> {
        self.tick += 1;
        let mut out = Vec::new();
        let mut btree_step = false;
        if let Some(page) = page_of(off, len).filter(|_| self.btree) {
            if let Some(pages) = self.btree_step(page, g) {
                btree_step = true;
                for c in pages {
                    let start = u64::from(c - 1) * len as u64;
                    out.extend(start / g.block_size..=(start + len as u64 - 1) / g.block_size);
                }
            }
        }
        if first > 0 && !btree_step {
            out.extend(self.stream_step(first, last, g));
        }
        out.retain(|&b| (b < first || b > last) && g.blocks.is_none_or(|n| b < n));
        out.sort_unstable();
        out.dedup();
        out.truncate(g.budget.max(1) as usize);
        out
    }

    /// A read of `page`: if it is a child of a remembered interior page and the scan
    /// moves to the next child, the children to fetch ahead (else `None`).
    fn btree_step(&mut self, page: u32, g: Geometry) -> Option<Vec<u32>> {
        let tick = self.tick;
        let (node, pos) = self
            .interiors
            .iter_mut()
            .filter_map(|i| i.children.iter().position(|&c| c == page).map(|p| (i, p)))
            .max_by_key(|(i, _)| i.used)?;
        node.used = tick;
        let n = node.children.len();
        let dir: i8 = match node.last {
            Some(prev) if pos == prev + 1 => 1,
            Some(prev) if pos + 1 == prev => -1,
            Some(prev) if pos == prev => return Some(Vec::new()),
            // The first child, in the direction of the scan that reached this page.
            None if node.inherit > 0 && pos == 0 => 1,
            None if node.inherit < 0 && pos + 1 == n => -1,
            _ => 0,
        };
        node.inherit = 0;
        node.last = Some(pos);
        if dir == 0 {
            node.dir = 0;
            return Some(Vec::new());
        }
        // Positions in the scan's order: forward is 0..n, backward is n-1 down to 0.
        let rank = |p: usize| if dir > 0 { p } else { n - 1 - p };
        let at = rank(pos);
        // The first batch goes out with the child SQLite waits for (not fetched yet): one
        // fewer ahead makes the two whole rounds of `concurrency` requests, not a third
        // round for a single one.
        let mut take = node.batch;
        if node.dir != dir {
            node.dir = dir;
            node.ahead = at + 1;
            node.batch = (2 * g.concurrency).max(2);
            take = node.batch - 1;
        }
        node.ahead = node.ahead.max(at + 1);
        if node.ahead - (at + 1) >= node.batch / 2 || node.ahead >= n {
            return Some(Vec::new());
        }
        let until = n.min(at + 1 + take);
        let pages = (node.ahead..until)
            .map(|r| node.children[rank(r)])
            .collect();
        node.ahead = until;
        node.batch = (node.batch * 2).min(g.budget.max(2) as usize);
        Some(pages)
    }

    /// A read of blocks `first..=last` that is not a b-tree step: the stream it continues
    /// (or a new one), and the blocks that stream reads ahead.
    fn stream_step(&mut self, first: u64, last: u64, g: Geometry) -> Vec<u64> {
        let tick = self.tick;
        let found = self
            .streams
            .iter_mut()
            .find(|s| first >= s.last && first <= s.last + 1 + GAP);
        let Some(s) = found else {
            if self.streams.len() >= STREAMS {
                let oldest = (0..self.streams.len())
                    .min_by_key(|&k| self.streams[k].used)
                    .unwrap_or(0);
                self.streams.remove(oldest);
            }
            self.streams.push(Stream {
                last,
                steps: 0,
                window: 0,
                ahead_until: 0,
                used: tick,
            });
            return Vec::new();
        };
        s.used = tick;
        if first == s.last {
            s.last = s.last.max(last);
            return Vec::new();
        }
        s.last = last;
        s.steps += 1;
        if s.steps < 2 || g.blocks.is_none() {
            return Vec::new();
        }
        let max = MAX_WINDOW.min(g.budget).max(1);
        s.window = if s.window == 0 {
            4.min(max)
        } else {
            (s.window * 2).min(max)
        };
        let from = s.ahead_until.max(last + 1);
        if from - (last + 1) >= s.window / 2 {
            return Vec::new();
        }
        s.ahead_until = last + 1 + s.window;
        (from..s.ahead_until).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 4096;

    fn geometry() -> Geometry {
        Geometry {
            block_size: PS as u64,
            blocks: Some(100_000),
            concurrency: 4,
            budget: 1000,
        }
    }

    /// A table interior page whose children are `children` (the last one the right-most).
    fn interior(children: &[u32]) -> Vec<u8> {
        let mut p = vec![0u8; PS];
        p[0] = 0x05;
        let cells = children.len() - 1;
        p[3..5].copy_from_slice(&(cells as u16).to_be_bytes());
        p[8..12].copy_from_slice(&children[cells].to_be_bytes());
        let mut at = PS;
        for (i, c) in children[..cells].iter().enumerate() {
            at -= 8;
            p[12 + 2 * i..14 + 2 * i].copy_from_slice(&(at as u16).to_be_bytes());
            p[at..at + 4].copy_from_slice(&c.to_be_bytes());
            p[at + 4] = i as u8; // the rowid varint
        }
        p
    }

    fn read(p: &mut Prefetcher, page: u32, content: &[u8]) -> Vec<u64> {
        let off = u64::from(page - 1) * PS as u64;
        let b = off / PS as u64;
        let ahead = p.plan(off, PS, b, b, geometry());
        p.observe(off, content);
        ahead
    }

    #[test]
    fn parses_interior_pages_only() {
        let children: Vec<u32> = (10..20).collect();
        assert_eq!(interior_children(&interior(&children), 2), Some(children));
        let mut leaf = vec![0u8; PS];
        leaf[0] = 0x0d;
        assert_eq!(interior_children(&leaf, 2), None);
        let mut page1 = vec![0u8; PS];
        page1[100] = 0x05;
        page1[108..112].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(
            interior_children(&page1, 1),
            Some(vec![7]),
            "page 1's header is at 100"
        );
    }

    #[test]
    fn a_point_query_fetches_nothing_ahead() {
        let mut p = Prefetcher {
            btree: true,
            ..Default::default()
        };
        let leaf = vec![0x0du8; PS];
        let children: Vec<u32> = (3..400).rev().collect(); // leaves out of order
        assert!(read(&mut p, 1, &leaf).is_empty());
        assert!(read(&mut p, 2, &interior(&children)).is_empty());
        assert!(read(&mut p, 200, &leaf).is_empty());
        // Another point query in the same transaction: still one child at a time.
        assert!(read(&mut p, 50, &leaf).is_empty());
    }

    #[test]
    fn a_scan_across_children_fetches_the_following_ones_in_growing_batches() {
        let mut p = Prefetcher {
            btree: true,
            ..Default::default()
        };
        let leaf = vec![0x0du8; PS];
        // Leaves scattered: the order of the children, not of the pages, is the scan's.
        let children: Vec<u32> = (0..300u32).map(|i| 1000 + (i * 37) % 300).collect();
        read(&mut p, 2, &interior(&children));
        assert!(read(&mut p, children[0], &leaf).is_empty());
        let first = read(&mut p, children[1], &leaf);
        let want: Vec<u64> = {
            let mut v: Vec<u64> = children[2..9].iter().map(|&c| u64::from(c) - 1).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(
            first, want,
            "after the second child, with it twice the concurrency (whole rounds)"
        );
        let mut fetched = first.len();
        for &c in &children[2..] {
            fetched += read(&mut p, c, &leaf).len();
        }
        assert_eq!(fetched, 298, "every later child fetched ahead exactly once");
    }

    #[test]
    fn a_scan_reaching_the_next_interior_page_fetches_its_children_from_the_first() {
        let mut p = Prefetcher {
            btree: true,
            ..Default::default()
        };
        let leaf = vec![0x0du8; PS];
        // A root over three interior pages, each over 20 leaves.
        let interiors = [10u32, 11, 12];
        let leaves = |k: u32| -> Vec<u32> { (0..20).map(|i| 100 + 20 * k + i).collect() };
        read(&mut p, 2, &interior(&interiors));
        read(&mut p, 10, &interior(&leaves(0)));
        assert!(
            read(&mut p, 100, &leaf).is_empty(),
            "the scan has not shown itself"
        );
        for &c in &leaves(0)[1..] {
            read(&mut p, c, &leaf);
        }
        // The root's second child: the scan across the root shows itself here.
        read(&mut p, 11, &interior(&leaves(1)));
        let first = read(&mut p, leaves(1)[0], &leaf);
        let want: Vec<u64> = leaves(1)[1..8].iter().map(|&c| u64::from(c) - 1).collect();
        assert_eq!(first, want, "fetched ahead from the first child");
    }

    #[test]
    fn a_point_query_through_a_deeper_tree_fetches_nothing_ahead() {
        let mut p = Prefetcher {
            btree: true,
            ..Default::default()
        };
        let leaf = vec![0x0du8; PS];
        let leaves: Vec<u32> = (100..120).collect();
        read(&mut p, 2, &interior(&[10, 11, 12]));
        read(&mut p, 11, &interior(&leaves));
        assert!(read(&mut p, 100, &leaf).is_empty());
    }

    #[test]
    fn streams_need_three_reads_and_tolerate_gaps() {
        let mut p = Prefetcher::default();
        let g = geometry();
        assert!(
            p.plan(0, 100, 0, 0, g).is_empty(),
            "block 0 starts no stream"
        );
        assert!(p.plan(10 * 4096, 4096, 10, 10, g).is_empty());
        assert!(p.plan(12 * 4096, 4096, 12, 12, g).is_empty());
        assert_eq!(p.plan(13 * 4096, 4096, 13, 13, g), [14, 15, 16, 17]);
        // An unrelated read elsewhere neither breaks the stream nor reads ahead.
        assert!(p.plan(500 * 4096, 4096, 500, 500, g).is_empty());
        assert_eq!(
            p.plan(15 * 4096, 4096, 15, 15, g),
            (18..24).collect::<Vec<_>>()
        );
    }
}
