"""Synthetic chemical reactions for the chython-rxnmap atom-mapping transformer: templated reactions
(amide coupling, esterification, Suzuki coupling, alkylation, reductive amination, ketone reduction)
between random R groups, encoded as chython 3.4's ``chython/reactions/attention/_encode.py`` does,
with the true product->reactant atom map; and chython's greedy walk that turns the attention matrix
into a mapping (``_assign.py``). Pure numpy."""
from __future__ import annotations

import numpy as np

_Z = {"B": 5, "C": 6, "N": 7, "O": 8, "F": 9, "S": 16, "Cl": 17, "Br": 35, "I": 53}
_VALENCE = {"B": 3, "C": 4, "N": 3, "O": 2, "F": 1, "S": 2, "Cl": 1, "Br": 1, "I": 1}


class _Mol:
    """A molecular graph: element symbols and bond orders (Kekule rings)."""

    def __init__(self):
        self.el: list[str] = []
        self.bonds: dict[tuple[int, int], int] = {}

    def add(self, element: str) -> int:
        self.el.append(element)
        return len(self.el) - 1

    def bond(self, i: int, j: int, order: int = 1) -> None:
        self.bonds[(min(i, j), max(i, j))] = order

    def nbrs(self, i: int) -> list[int]:
        return [b if a == i else a for (a, b) in self.bonds if i in (a, b)]

    def hydrogens(self, i: int) -> int:
        return max(0, _VALENCE[self.el[i]] - sum(o for (a, b), o in self.bonds.items() if i in (a, b)))


def _r_group(rng, m: _Mol, at: int) -> None:
    """Grow an R group on atom ``at``: an alkyl chain (with a branch or a heteroatom end) or a
    substituted phenyl / pyridyl ring."""
    if rng.random() < 1 / 3:
        prev = at
        for _ in range(int(rng.integers(1, 5))):
            c = m.add("C")
            m.bond(prev, c)
            prev = c
            if rng.random() < 0.2:
                m.bond(c, m.add("C"))
        if rng.random() < 0.3:
            m.bond(prev, m.add(str(rng.choice(["O", "N", "F", "Cl"]))))
        return
    ring = [m.add("C") for _ in range(6)]
    if rng.random() < 0.25:
        m.el[ring[int(rng.integers(2, 6))]] = "N"
    for i in range(6):
        m.bond(ring[i], ring[(i + 1) % 6], 2 if i % 2 == 0 else 1)
    m.bond(at, ring[0])
    for _ in range(int(rng.integers(0, 3))):
        pos = ring[int(rng.integers(1, 6))]
        if m.el[pos] != "C" or m.hydrogens(pos) == 0:
            continue
        s = str(rng.choice(["F", "Cl", "C", "OMe", "CF3", "Br"]))
        if s == "CF3":
            c = m.add("C")
            m.bond(pos, c)
            for _ in range(3):
                m.bond(c, m.add("F"))
        elif s == "OMe":
            o = m.add("O")
            m.bond(pos, o)
            m.bond(o, m.add("C"))
        else:
            m.bond(pos, m.add(s))


def _frag(rng, head: str) -> tuple[_Mol, int]:
    m = _Mol()
    h = m.add(head)
    _r_group(rng, m, h)
    return m, h


def _reaction(rng):
    """(reactants, products, truth): ``truth[k]`` is the reactant-side atom index (over the reactant
    atoms in token order) of product atom ``k``."""
    k = int(rng.integers(0, 6))
    b = None
    if k in (0, 1):  # amide coupling / esterification: R1-C(=O)OH + H-X-R2 -> R1-C(=O)-X-R2 (+ water)
        a, c = _frag(rng, "C")
        o1, o2 = a.add("O"), a.add("O")
        a.bond(c, o1, 2)
        a.bond(c, o2)
        b, x = _frag(rng, "N" if k == 0 else "O")
        drop_a, drop_b, new_bond = {o2}, set(), (c, x)
    elif k == 2:  # Suzuki coupling: Ar-Br + Ar'-B(OH)2 -> Ar-Ar'
        a, c = _frag(rng, "C")
        br = a.add("Br")
        a.bond(c, br)
        b, c2 = _frag(rng, "C")
        bb = b.add("B")
        b.bond(c2, bb)
        ohs = [b.add("O") for _ in range(2)]
        for o in ohs:
            b.bond(bb, o)
        drop_a, drop_b, new_bond = {br}, {bb, *ohs}, (c, c2)
    elif k == 3:  # Williamson ether synthesis / N-alkylation: R1-CH2-Br + H-X-R2 -> R1-CH2-X-R2
        a, c = _frag(rng, "C")
        br = a.add("Br")
        a.bond(c, br)
        b, x = _frag(rng, str(rng.choice(["O", "N"])))
        drop_a, drop_b, new_bond = {br}, set(), (c, x)
    elif k == 4:  # reductive amination: R1-CH=O + H2N-R2 -> R1-CH2-NH-R2
        a, c = _frag(rng, "C")
        o = a.add("O")
        a.bond(c, o, 2)
        b, x = _frag(rng, "N")
        drop_a, drop_b, new_bond = {o}, set(), (c, x)
    else:  # ketone reduction: R1-C(=O)-R2 -> R1-CH(OH)-R2
        a, c = _frag(rng, "C")
        o = a.add("O")
        a.bond(c, o, 2)
        _r_group(rng, a, c)
        drop_a, drop_b, new_bond = set(), set(), None
    # the product graph over (side, index) atoms
    atoms = [(0, i) for i in range(len(a.el)) if i not in drop_a]
    if b is not None:
        atoms += [(1, i) for i in range(len(b.el)) if i not in drop_b]
    bonds = {((0, i), (0, j)): v for (i, j), v in a.bonds.items() if i not in drop_a and j not in drop_a}
    if b is not None:
        bonds.update({((1, i), (1, j)): v for (i, j), v in b.bonds.items() if i not in drop_b and j not in drop_b})
        bonds[((0, new_bond[0]), (1, new_bond[1]))] = 1
    if k == 5:
        bonds[((0, c), (0, o))] = 1
    # product atoms in a BFS order from a random atom (a SMILES writer's order, not the reactants')
    adj: dict = {x: [] for x in atoms}
    for (x, y) in bonds:
        adj[x].append(y)
        adj[y].append(x)
    start = atoms[int(rng.integers(0, len(atoms)))]
    order, seen, queue = [], {start}, [start]
    while queue:
        x = queue.pop(0)
        order.append(x)
        nb = list(adj[x])
        rng.shuffle(nb)
        for y in nb:
            if y not in seen:
                seen.add(y)
                queue.append(y)
    p = _Mol()
    new = {x: p.add((a if x[0] == 0 else b).el[x[1]]) for x in order}
    for (x, y), v in bonds.items():
        p.bond(new[x], new[y], v)
    reactants = [a] if b is None else ([a, b] if rng.random() < 0.5 else [b, a])
    offset, pos = {}, 0
    for mol in reactants:
        offset[id(mol)] = pos
        pos += len(mol.el)
    truth = np.array([offset[id(a if s == 0 else b)] + i for s, i in order])
    return reactants, [p], truth


def _encode_molecule(m: _Mol):
    n = len(m.el)
    d = np.full((n, n), -1, np.int64)
    for s in range(n):
        d[s, s] = 0
        queue = [s]
        while queue:
            i = queue.pop(0)
            for j in m.nbrs(i):
                if d[s, j] < 0:
                    d[s, j] = d[s, i] + 1
                    queue.append(j)
    atoms = np.array([1] + [_Z[e] + 2 for e in m.el], np.int64)  # mol_cls token first
    nbrs = np.array([0] + [min(len(m.nbrs(i)) + m.hydrogens(i), 14) + 2 for i in range(n)], np.int64)
    dist = np.ones((n + 1, n + 1), np.int64)
    dist[1:, 1:] = np.where(d < 0, 1, np.minimum(d, 10) + 2)
    return atoms, nbrs, dist


def _encode_reaction(reactants, products) -> dict[str, np.ndarray]:
    """``[rxn_cls] [mol_cls, atoms...] x reactants [mol_cls, atoms...] x products`` as chython's
    ``encode_reaction``: atomic number + 2, min(degree + H, 14) + 2, bond distance clamped at 10 + 2
    (1 between molecules, 0 padding), roles 0 mol_cls / 1 rxn_cls / 2 reactant / 3 product."""
    atoms, nbrs, roles, blocks = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)], [1], []
    for mols, role in ((reactants, 2), (products, 3)):
        for m in mols:
            a, n, d = _encode_molecule(m)
            atoms.append(a)
            nbrs.append(n)
            blocks.append(d)
            roles += [0] + [role] * (len(a) - 1)
    atoms_a = np.concatenate(atoms)
    total = len(atoms_a)
    dist = np.zeros((total, total), np.int64)
    dist[0, 0] = 1
    pos = 1
    for d in blocks:
        dist[pos:pos + len(d), pos:pos + len(d)] = d
        pos += len(d)
    return {"atoms": atoms_a[None], "neighbors": np.concatenate(nbrs)[None], "distances": dist[None],
            "roles": np.array(roles, np.int64)[None]}


def _mapping(feed: dict[str, np.ndarray], attention: np.ndarray, multiplier: float = 1.75) -> np.ndarray:
    """chython's attention mapping from the model output and its feed: the product x reactant block
    plus the transposed reactant x product block, masked to equal elements, then the greedy walk.
    Returns per product atom the reactant atom index (-1 = unplaced)."""
    roles, atoms, dist = feed["roles"][0], feed["atoms"][0], feed["distances"][0]
    r, p = roles == 2, roles == 3
    att = np.asarray(attention, np.float64).reshape(len(roles), len(roles))
    a = (att[np.ix_(p, r)] + att[np.ix_(r, p)].T) * (atoms[p][:, None] == atoms[r][None, :])
    bonded = dist == 3  # one bond (distance 1, shifted by 2)
    return _greedy_mapping(a, bonded[np.ix_(r, r)], bonded[np.ix_(p, p)], multiplier)


def _interchangeable(feed: dict[str, np.ndarray]) -> np.ndarray:
    """Per reactant atom, a class id: atoms of one class are the same to the model (colour refinement of
    its own inputs: element, neighbour count and role per token, the bond distance between every two
    tokens), so its attention is equal for them up to float rounding, and which of them the greedy walk
    picks is a tie broken by noise (two methyl carbons, the oxygens of a symmetric group)."""
    roles, atoms, nbrs, dist = feed["roles"][0], feed["atoms"][0], feed["neighbors"][0], feed["distances"][0]
    _, col = np.unique(np.stack([atoms, nbrs, roles], 1), axis=0, return_inverse=True)
    col = col.reshape(-1)
    for _ in range(len(roles)):
        sig = [(int(col[i]), tuple(sorted(zip(dist[i].tolist(), col.tolist(), strict=True))))
               for i in range(len(roles))]
        new = np.unique(np.array([hash(x) for x in sig]), return_inverse=True)[1].reshape(-1)
        done = len(set(new.tolist())) == len(set(col.tolist()))
        col = new
        if done:
            break
    return col[roles == 2]


def _greedy_mapping(attention: np.ndarray, r_adj: np.ndarray, p_adj: np.ndarray, multiplier: float) -> np.ndarray:
    """chython 3.4 ``greedy_mapping``: start at the strongest cell, then extend along the frontier of
    product atoms bonded to placed ones, boosting the neighbourhood of each accepted pair."""
    att = attention.copy()
    n_p, n_r = att.shape
    out = np.full(n_p, -1, np.int64)
    frontier = np.zeros(n_p, bool)
    unplaced = np.ones(n_p, bool)
    for step in range(n_p):
        if step and frontier.any():
            rows = np.nonzero(frontier)[0]
            i, j = np.unravel_index(np.argmax(att[frontier]), (len(rows), n_r))
            i = rows[i]
        else:
            i, j = np.unravel_index(np.argmax(att), att.shape)
        if np.isclose(att[i, j], 0.0):
            break
        out[i] = j
        att[np.ix_(p_adj[i], r_adj[j])] *= multiplier
        att[i] = 0
        att[:, j] = 0
        unplaced[i] = False
        frontier[i] = False
        frontier[p_adj[i] & unplaced] = True
    return out
