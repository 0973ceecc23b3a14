//! The area tree: country > level 1 > level 2 > ... Each station hangs under one leaf path.
//!
//! Invariant: a node's parent has a smaller index than the node, so a single reverse pass adds
//! children into parents (see `count`).

use crate::station_ids::StationIds;
use std::collections::HashMap;

/// Area names are hashed on every station path of an import; SipHash's resistance to chosen keys
/// is not needed for names that only slow down their own file.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

pub type AreaId = u32;

/// The root is node 0 (the whole election).
pub const ROOT: AreaId = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaNode {
    pub name: String,
    /// 0 for the root, 1 for the first named level, ...
    pub depth: u8,
    pub parent: AreaId,
}

#[derive(Clone, Debug)]
pub struct AreaTree {
    /// Names of the levels below the root, coarsest first (e.g. `province`, `district`).
    pub levels: Vec<String>,
    pub nodes: Vec<AreaNode>,
    /// Children by parent and the hash of their name; the name itself is only in the node.
    /// One hash and one allocation a new area: an import creates a hundred thousand of them.
    index: Map<(AreaId, u64), AreaId>,
    /// Children whose (parent, hash) the index already gave to another name (64-bit hashes:
    /// in practice never), found by a scan.
    clashes: Vec<AreaId>,
    names: ahash::RandomState,
}

/// Two trees are equal when their levels and nodes are (the index is derived from the nodes).
impl PartialEq for AreaTree {
    fn eq(&self, other: &AreaTree) -> bool {
        self.levels == other.levels && self.nodes == other.nodes
    }
}

impl Eq for AreaTree {}

/// Stations' area paths, one name per level, kept in one string (the same one-string column as
/// station ids, [`StationIds`]): a million stations have some hundred thousand paths, and a
/// `String` for each name cost more to allocate and free than the rest of their import.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AreaPaths {
    levels: usize,
    paths: usize,
    /// The names, path after path.
    names: StationIds,
}

impl AreaPaths {
    pub fn new(levels: usize) -> AreaPaths {
        AreaPaths {
            levels,
            ..AreaPaths::default()
        }
    }

    /// Adds a path of exactly `levels` names.
    pub fn push<S: AsRef<str>>(&mut self, names: impl IntoIterator<Item = S>) {
        for name in names {
            self.names.push(name.as_ref());
        }
        debug_assert_eq!(self.names.len(), (self.paths + 1) * self.levels);
        self.paths += 1;
    }

    /// Removes the last path.
    pub fn pop(&mut self) {
        if self.paths == 0 {
            return;
        }
        self.paths -= 1;
        self.names.truncate(self.paths * self.levels);
    }

    /// Adds every path of `other` (of the same levels) after these.
    pub fn append(&mut self, other: &AreaPaths) {
        self.names.extend_from(&other.names);
        self.paths += other.paths;
    }

    pub fn len(&self) -> usize {
        self.paths
    }

    pub fn is_empty(&self) -> bool {
        self.paths == 0
    }

    /// The name at `level` (0 = the first level) of path `p`.
    pub fn name(&self, p: usize, level: usize) -> &str {
        &self.names[p * self.levels + level]
    }

    /// The names of path `p`, first level first.
    pub fn path(&self, p: usize) -> impl Iterator<Item = &str> {
        (0..self.levels).map(move |l| self.name(p, l))
    }
}

/// Shown for an area cell left empty in the source.
pub const UNNAMED_AREA: &str = "(none)";

impl AreaTree {
    pub fn new(root_name: &str, levels: Vec<String>) -> Self {
        AreaTree {
            levels,
            nodes: vec![AreaNode {
                name: root_name.to_string(),
                depth: 0,
                parent: ROOT,
            }],
            index: Map::default(),
            clashes: Vec::new(),
            names: ahash::RandomState::new(),
        }
    }

    /// The child of `parent` called `name`, created if new.
    pub fn child(&mut self, parent: AreaId, name: &str) -> AreaId {
        let name = if name.is_empty() { UNNAMED_AREA } else { name };
        let key = (parent, self.names.hash_one(name));
        let clash = match self.indexed(key, name) {
            Ok(id) => return id,
            Err(clash) => clash,
        };
        let id = self.nodes.len() as AreaId;
        let depth = self.nodes[parent as usize].depth + 1;
        self.nodes.push(AreaNode {
            name: name.to_string(),
            depth,
            parent,
        });
        if clash {
            self.clashes.push(id);
        } else {
            self.index.insert(key, id);
        }
        id
    }

    /// The child called exactly `name` under `key` (its parent and the hash of `name`), or
    /// whether the key is taken by a child of another name (a clash).
    fn indexed(&self, key: (AreaId, u64), name: &str) -> Result<AreaId, bool> {
        let Some(&id) = self.index.get(&key) else {
            return Err(false);
        };
        if self.nodes[id as usize].name == name {
            return Ok(id);
        }
        self.clashes
            .iter()
            .copied()
            .find(|&c| {
                let n = &self.nodes[c as usize];
                n.parent == key.0 && n.name == name
            })
            .ok_or(true)
    }

    /// The child of `parent` called exactly `name`, if there is one.
    fn existing_child(&self, parent: AreaId, name: &str) -> Option<AreaId> {
        self.indexed((parent, self.names.hash_one(name)), name).ok()
    }

    /// The leaf for a full path (one name per level), created if new.
    pub fn leaf<S: AsRef<str>>(&mut self, path: impl IntoIterator<Item = S>) -> AreaId {
        path.into_iter()
            .fold(ROOT, |parent, name| self.child(parent, name.as_ref()))
    }

    /// Leaves for a list of paths. Consecutive paths usually share their upper levels (files
    /// are sorted by area), so only the levels that changed are looked up.
    pub fn leaves(&mut self, paths: &AreaPaths) -> Vec<AreaId> {
        self.leaves_of(std::slice::from_ref(paths))
    }

    /// [`AreaTree::leaves`] of lists of paths one after the other (the import's chunks), as
    /// if they were one list, without copying them into one.
    pub fn leaves_of(&mut self, parts: &[AreaPaths]) -> Vec<AreaId> {
        let total: usize = parts.iter().map(AreaPaths::len).sum();
        let levels = parts.first().map_or(0, |p| p.levels);
        let mut out = Vec::with_capacity(total);
        let mut ids: Vec<AreaId> = Vec::with_capacity(levels);
        // About one new area a path: room made once rather than by doubling (each doubling
        // copies, and fresh pages are paid in faults).
        self.nodes.reserve(total);
        self.index.reserve(total);
        let mut previous: Option<(&AreaPaths, usize)> = None;
        for part in parts {
            debug_assert_eq!(part.levels, levels);
            for p in 0..part.len() {
                let same = previous.map_or(0, |(q, i)| {
                    (0..levels)
                        .take_while(|&l| part.name(p, l) == q.name(i, l))
                        .count()
                });
                ids.truncate(same);
                for l in same..levels {
                    let parent = ids.last().copied().unwrap_or(ROOT);
                    ids.push(self.child(parent, part.name(p, l)));
                }
                out.push(ids.last().copied().unwrap_or(ROOT));
                previous = Some((part, p));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Depth of a level by name (1-based), case-insensitive.
    pub fn level_depth(&self, name: &str) -> Option<u8> {
        self.levels
            .iter()
            .position(|l| l.eq_ignore_ascii_case(name))
            .map(|i| i as u8 + 1)
    }

    /// Names from the first level down to `id` (empty for the root).
    pub fn path(&self, id: AreaId) -> Vec<&str> {
        let mut out = Vec::new();
        let mut cur = id;
        while cur != ROOT {
            let n = &self.nodes[cur as usize];
            out.push(n.name.as_str());
            cur = n.parent;
        }
        out.reverse();
        out
    }

    pub fn path_string(&self, id: AreaId) -> String {
        self.path(id).join("/")
    }

    /// Finds a node by a `/`-separated path from the first level (e.g. `Adana/Ceyhan`),
    /// comparing names case-insensitively.
    pub fn find(&self, path: &str) -> Option<AreaId> {
        let mut cur = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = match self.existing_child(cur, part) {
                Some(id) => id,
                // Case-insensitive: the first child in the source's order that matches.
                None => (cur as usize + 1..self.nodes.len())
                    .find(|&i| {
                        let n = &self.nodes[i];
                        n.parent == cur && names_match(&n.name, part)
                    })
                    .map(|i| i as AreaId)?,
            };
        }
        Some(cur)
    }

    /// Ancestor of `id` at `depth` (the node itself when it is at that depth).
    pub fn ancestor_at(&self, mut id: AreaId, depth: u8) -> AreaId {
        while self.nodes[id as usize].depth > depth {
            id = self.nodes[id as usize].parent;
        }
        id
    }

    /// Nodes at `depth`, in creation order (the order the source lists them).
    pub fn nodes_at(&self, depth: u8) -> impl Iterator<Item = AreaId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(_, n)| n.depth == depth)
            .map(|(i, _)| i as AreaId)
    }
}

fn names_match(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_names_with_one_hash_are_two_areas() {
        let mut t = AreaTree::new("All", vec!["region".into()]);
        let a = t.child(ROOT, "A");
        // Make "B" look as if it hashed like "A" under the root.
        let b_key = (ROOT, t.names.hash_one("B"));
        t.index.insert(b_key, a);
        let b = t.child(ROOT, "B");
        assert_ne!(a, b);
        assert_eq!(t.child(ROOT, "B"), b);
        assert_eq!(t.child(ROOT, "A"), a);
        assert_eq!(t.clashes, [b]);
        assert_eq!(t.find("B"), Some(b));
        assert_eq!(t.find("b"), Some(b));
        assert_eq!(t.find("A"), Some(a));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn paths_are_interned_and_found() {
        let mut t = AreaTree::new("Turkey", vec!["province".into(), "district".into()]);
        let a = t.leaf(["Adana", "Ceyhan"]);
        let b = t.leaf(["Adana", "Aladağ"]);
        let c = t.leaf(["Adana", "Ceyhan"]);
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_eq!(t.len(), 4);
        assert_eq!(t.path_string(b), "Adana/Aladağ");
        assert_eq!(t.find("adana/ceyhan"), Some(a));
        assert_eq!(t.find("Adana/Nowhere"), None);
        assert_eq!(t.level_depth("District"), Some(2));
        assert_eq!(t.ancestor_at(a, 1), t.find("Adana").unwrap());
        let paths = [
            vec!["Adana", "Ceyhan"],
            vec!["Adana", "Kozan"],
            vec!["Ankara", "Ceyhan"],
            vec!["Adana", "Ceyhan"],
        ];
        let mut list = AreaPaths::new(2);
        paths.iter().for_each(|p| list.push(p));
        let leaves = t.leaves(&list);
        let one_by_one: Vec<AreaId> = paths.iter().map(|p| t.leaf(p)).collect();
        assert_eq!(leaves, one_by_one);
        // The list as the import builds it: chunk by chunk, a rejected row's path taken back.
        let mut more = AreaPaths::new(2);
        more.push(["Bursa", "Nilüfer"]);
        more.push(["Bursa", "Osmangazi"]);
        more.pop();
        list.append(&more);
        assert_eq!(list.len(), 5);
        assert!(list.path(4).eq(["Bursa", "Nilüfer"]));
        assert!(list.path(1).eq(["Adana", "Kozan"]));
        assert_eq!(t.leaves(&list)[..4], leaves[..]);
        assert_eq!(leaves[0], a);
        assert_ne!(leaves[2], a);
        // Chunk by chunk without the copy: the same leaves, numbered alike, including a path
        // that repeats the one ending the previous chunk.
        let levels = vec!["province".to_string(), "district".to_string()];
        let mut first = AreaPaths::new(2);
        paths.iter().for_each(|p| first.push(p));
        let mut second = AreaPaths::new(2);
        second.push(["Adana", "Ceyhan"]);
        second.push(["Bursa", "Nilüfer"]);
        second.push(["Adana", "Yüreğir"]);
        let mut whole = first.clone();
        whole.append(&second);
        let mut joined = AreaTree::new("T", levels.clone());
        let mut chunked = AreaTree::new("T", levels);
        let by_chunks = chunked.leaves_of(&[first, AreaPaths::new(2), second]);
        assert_eq!(joined.leaves(&whole), by_chunks);
        assert_eq!(joined, chunked);
        assert_eq!(by_chunks[4], by_chunks[0]);
        assert_eq!(chunked.len(), 9);
        assert!(t
            .nodes
            .iter()
            .enumerate()
            .skip(1)
            .all(|(i, n)| (n.parent as usize) < i));
    }

    #[test]
    fn empty_names_become_unnamed() {
        let mut t = AreaTree::new("All", vec!["region".into()]);
        let a = t.leaf([""]);
        assert_eq!(t.nodes[a as usize].name, UNNAMED_AREA);
    }
}
