//! The area tree: country > level 1 > level 2 > ... Each station hangs under one leaf path.
//!
//! Invariant: a node's parent has a smaller index than the node, so a single reverse pass adds
//! children into parents (see `count`).

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaTree {
    /// Names of the levels below the root, coarsest first (e.g. `province`, `district`).
    pub levels: Vec<String>,
    pub nodes: Vec<AreaNode>,
    /// Children of each node by name.
    index: Map<AreaId, Map<String, AreaId>>,
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
        }
    }

    /// The child of `parent` called `name`, created if new.
    pub fn child(&mut self, parent: AreaId, name: &str) -> AreaId {
        let name = if name.is_empty() { UNNAMED_AREA } else { name };
        if let Some(&id) = self.index.get(&parent).and_then(|m| m.get(name)) {
            return id;
        }
        let id = self.nodes.len() as AreaId;
        let depth = self.nodes[parent as usize].depth + 1;
        self.nodes.push(AreaNode {
            name: name.to_string(),
            depth,
            parent,
        });
        self.index
            .entry(parent)
            .or_default()
            .insert(name.to_string(), id);
        id
    }

    /// The leaf for a full path (one name per level), created if new.
    pub fn leaf<S: AsRef<str>>(&mut self, path: &[S]) -> AreaId {
        path.iter()
            .fold(ROOT, |parent, name| self.child(parent, name.as_ref()))
    }

    /// Leaves for a sequence of paths. Consecutive paths usually share their upper levels (files
    /// are sorted by area), so only the levels that changed are looked up.
    pub fn leaves<S: AsRef<str>>(&mut self, paths: &[Vec<S>]) -> Vec<AreaId> {
        let mut out = Vec::with_capacity(paths.len());
        let mut prev: Option<&Vec<S>> = None;
        let mut ids: Vec<AreaId> = Vec::new();
        for p in paths {
            let same = prev.map_or(0, |q| {
                q.iter()
                    .zip(p)
                    .take_while(|(a, b)| a.as_ref() == b.as_ref())
                    .count()
            });
            ids.truncate(same);
            for name in &p[same..] {
                let parent = ids.last().copied().unwrap_or(ROOT);
                ids.push(self.child(parent, name.as_ref()));
            }
            out.push(ids.last().copied().unwrap_or(ROOT));
            prev = Some(p);
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
            let children = self.index.get(&cur)?;
            cur = match children.get(part) {
                Some(&id) => id,
                None => children
                    .iter()
                    .find(|(name, _)| names_match(name, part))
                    .map(|(_, &id)| id)?,
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
    fn paths_are_interned_and_found() {
        let mut t = AreaTree::new("Turkey", vec!["province".into(), "district".into()]);
        let a = t.leaf(&["Adana", "Ceyhan"]);
        let b = t.leaf(&["Adana", "Aladağ"]);
        let c = t.leaf(&["Adana", "Ceyhan"]);
        assert_eq!(a, c);
        assert_ne!(a, b);
        assert_eq!(t.len(), 4);
        assert_eq!(t.path_string(b), "Adana/Aladağ");
        assert_eq!(t.find("adana/ceyhan"), Some(a));
        assert_eq!(t.find("Adana/Nowhere"), None);
        assert_eq!(t.level_depth("District"), Some(2));
        assert_eq!(t.ancestor_at(a, 1), t.find("Adana").unwrap());
        let paths = vec![
            vec!["Adana", "Ceyhan"],
            vec!["Adana", "Kozan"],
            vec!["Ankara", "Ceyhan"],
            vec!["Adana", "Ceyhan"],
        ];
        let leaves = t.leaves(&paths);
        let one_by_one: Vec<AreaId> = paths.iter().map(|p| t.leaf(p)).collect();
        assert_eq!(leaves, one_by_one);
        assert_eq!(leaves[0], a);
        assert_ne!(leaves[2], a);
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
        let a = t.leaf(&[""]);
        assert_eq!(t.nodes[a as usize].name, UNNAMED_AREA);
    }
}
