"""Index the installed distributions of the target environment: who owns which file, by name.

Mapping an import to a distribution through the *file* it loads (and the `RECORD` / conda
`files` list that claims that file) is the only approach that survives renamed packages
(`yaml` -> PyYAML), namespace packages and extension-only packages; alias tables and
`top_level.txt` do not. The index reads metadata only, never imports anything.

Sources, in sys.path order:
* pip `*.dist-info` (METADATA headers, RECORD, INSTALLER, direct_url.json) in every directory
  of the target's sys.path;
* `*.egg-info` (installed-files.txt, else top_level.txt as owned directories) best effort;
* conda `<prefix>/conda-meta/*.json` records (`files` relative to the prefix).

A Python package installed by conda has both a conda record and a dist-info (INSTALLER=conda)
listed in that record's files: the conda record is the one owner; the dist-info only adds its
pip name as an alias (`get("torch")` finds conda's `pytorch`).

Speed (it runs on every `lfm-pack analyze`): names come from directory listings; RECORDs and
conda records are read on the first ownership query (one pass, plain string splitting,
`normpath` only for `../` entries, one dict per base directory keyed by the relative path);
METADATA headers are read (without the email package) only for distributions somebody asks
for. Cold: ~40-60 ms for 160 real distributions / 40k files on an idle core. The small tables
(names, top-level name -> candidate distributions, conflicts, findings) are cached in
`${XDG_CACHE_HOME:-~/.cache}/lfm-pack/index/`, validated by (path, mtime_ns, size) of every
scanned directory, RECORD and conda record; a warm query re-reads only the RECORDs of the
candidates for the queried path: ~5-10 ms.

Corrupt metadata policy (documented in docs/exit-codes.md as exit 5):
* a conda-meta JSON that does not parse -> `MetadataError` at the first ownership query (conda
  itself refuses such an environment, and ownership cannot be trusted without it);
* a dist-info with an unreadable RECORD or METADATA without Name/Version -> a warning finding
  `corrupt-metadata`, and `MetadataError` only when that distribution is actually needed:
  `get(name)` names it, or `owners(path)` cannot find an owner for a file in its directory
  whose top-level name matches the broken distribution's.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import marshal
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from lfm_pack.errors import MetadataError
from lfm_pack.models import Distribution, EnvInfo, Finding, normalize_name
from lfm_pack.paths import user_cache_dir

normalize = normalize_name  # PEP 503 project name (the one normalizer, in lfm_pack.models)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


@dataclass
class _Entry:
    """One metadata source before (and after) it is parsed into a Distribution."""

    kind: str  # "dist-info" | "egg-info" | "conda"
    meta_path: str  # the .dist-info/.egg-info directory or conda-meta JSON file
    base: str  # directory RECORD paths are relative to (site dir) or the conda prefix
    order: int  # position of its sys.path entry (conda: position of site-packages)
    key: str  # normalized name (from the directory name until METADATA is read)
    version_hint: str = ""
    rels: list[str] | None = None  # file paths as listed, relative to `base`
    owned_dirs: tuple[str, ...] = ()
    error: str | None = None
    dist: Distribution | None = None
    conda: dict[str, object] | None = None
    aliases: list[str] = field(default_factory=list)
    claimed: bool = False  # its files are in the ownership tables

    def files(self) -> tuple[str, ...]:
        rels = self.rels or []
        if _all_plain(rels):
            prefix = self.base + "/"
            return tuple([prefix + r for r in rels])
        return tuple(_join(self.base, r) for r in rels)


def _metadata_headers(text: str, wanted: tuple[str, ...]) -> dict[str, list[str]]:
    """The RFC 822 header block of METADATA/PKG-INFO, only the `wanted` (lower-case) keys.

    Same result as `email.parser.HeaderParser` for these single-line fields (continuation
    lines are folded), without importing the email package on every run: METADATA is read
    for each distribution of the closure, on the interactive path.
    """
    out: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in text.splitlines():
        if not line:
            break  # end of the header block (whitespace-only lines are continuations)
        if line[0] in " \t":
            if last is not None:
                last[-1] = last[-1] + " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            last = None
            continue
        k = key.strip().lower()
        if k in wanted:
            last = out.setdefault(k, [])
            last.append(value.strip())
        else:
            last = None
    return out


def _split_dirname(name: str) -> tuple[str, str]:
    """`PyYAML-6.0.1.dist-info` -> ('pyyaml', '6.0.1') without reading any file."""
    stem = name.rsplit(".", 1)[0]
    if stem.endswith(".dist") or stem.endswith(".egg"):
        stem = stem.rsplit(".", 1)[0]
    parts = stem.split("-")
    version = parts[1] if len(parts) > 1 else ""
    return normalize(parts[0]), version


def _is_plain(rel: str) -> bool:
    """A relative path that needs no normalization (the overwhelming majority)."""
    return not (
        rel.startswith(("/", "./", "../"))
        or "/../" in rel
        or "/./" in rel
        or "//" in rel
        or "\\" in rel
    )


def _all_plain(rels: list[str]) -> bool:
    """One C-speed scan instead of a function call per path (RECORDs have ~10^4 lines)."""
    blob = "\n" + "\n".join(rels)
    return not ("./" in blob or "\n/" in blob or "//" in blob or "\\" in blob)


def _join(base: str, rel: str) -> str:
    """Absolute normalized path of a RECORD entry (fast path when no normalization needed)."""
    if _is_plain(rel):
        return base + "/" + rel
    return os.path.normpath(os.path.join(base, rel.replace("\\", "/")))


def _record_rels(text: str) -> list[str]:
    """First column of a RECORD: plain split, the csv module only when a path is quoted."""
    if '"' in text:
        return [row[0] for row in csv.reader(text.splitlines()) if row and row[0]]
    return [line.split(",", 1)[0] for line in text.splitlines() if line and line[0] != ","]


class DistIndex:
    """File ownership and by-name lookup over the target's installed distributions.

    Built by `load_index`; everything is parsed on demand and then cached, so the object is
    immutable from the outside (treat it as frozen). Ownership is kept as one table per base
    directory keyed by the *relative* path as RECORD spells it (no per-file string joins),
    plus an absolute-path table for the few entries that leave their base (`../../bin/x`).
    """

    def __init__(self, env: EnvInfo, entries: list[_Entry], site_dirs: list[str]) -> None:
        self._env = env
        self._entries = entries
        self._site_dirs = site_dirs
        self._develop = _develop_dirs(site_dirs)
        self._loaded = False
        self._tables: dict[str, dict[str, int]] = {}
        self._abs: dict[str, int] = {}
        self._owned_dirs: list[tuple[str, int]] = []
        self._by_key: dict[str, int] = {}
        self._shadowed: list[int] = []
        self._absorbed: set[int] = set()
        self._findings: list[Finding] = []
        self._conflicts: dict[str, list[int]] = {}
        self._tops: dict[str, dict[str, list[int]]] = {}  # base -> top-level name -> entries
        self._tops_complete = False  # False after a cache restore: claim on demand
        self._fingerprint = ""
        self._build_names()

    # -- construction ----------------------------------------------------------------------

    def _build_names(self) -> None:
        """By-name table from directory/record names only (no file read for pip dists)."""
        for i, e in enumerate(self._entries):
            if e.kind != "conda" and e.key not in self._by_key:
                self._by_key[e.key] = i
        for i, e in enumerate(self._entries):
            if e.kind == "conda":
                # a conda record wins its name over a dist-info of the same project
                self._by_key[e.key] = i

    def _load(self) -> None:
        """Build the ownership tables once: from the on-disk cache when nothing changed."""
        if self._loaded:
            return
        self._loaded = True
        stamp = _stamp(self._entries, self._site_dirs)
        self._fingerprint = hashlib.sha256(repr(stamp).encode()).hexdigest()
        path = _cache_file(self._env)
        if self._restore(path, stamp):
            return
        self._build()
        self._save(path, stamp)

    def _restore(self, path: str, stamp: list[tuple[str, int, int]]) -> bool:
        """Reuse the last run's index of this environment if no metadata changed.

        Only small tables are cached (names, top-level -> candidate distributions, conflicts,
        findings); the RECORDs of the few candidates of a queried path are re-read on demand,
        so a warm lookup costs a few file reads instead of parsing every RECORD.
        """
        try:
            with open(path, "rb") as fh:
                data = marshal.load(fh)
            if data["v"] != _CACHE_VERSION or data["stamp"] != stamp:
                return False
            entries = [
                _Entry(
                    kind=row[0],
                    meta_path=row[1],
                    base=row[2],
                    order=row[3],
                    key=row[4],
                    version_hint=row[5],
                    owned_dirs=tuple(row[6]),
                    aliases=list(row[7]),
                    conda=row[8],
                )
                for row in data["entries"]
            ]
            tops = {
                base: {top: list(ids) for top, ids in t.items()} for base, t in data["tops"].items()
            }
            self._abs = dict(data["abs"])
            self._owned_dirs = [(d, i) for d, i in data["owned_dirs"]]
            self._by_key = dict(data["by_key"])
            self._shadowed = list(data["shadowed"])
            self._absorbed = set(data["absorbed"])
            self._conflicts = {k: list(v) for k, v in data["conflicts"].items()}
            self._findings = [Finding(c, m) for c, m in data["findings"]]
        except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
            return False  # missing, truncated or foreign: rebuild, never trust
        self._entries = entries
        self._tops = tops
        return True

    def _save(self, path: str, stamp: list[tuple[str, int, int]]) -> None:
        """Best effort (read-only home, full disk: the next run just rebuilds)."""
        if any(e.error for e in self._entries):
            return  # broken metadata is re-examined (and reported) on every run
        rows = [
            (
                e.kind,
                e.meta_path,
                e.base,
                e.order,
                e.key,
                e.version_hint,
                e.owned_dirs,
                e.aliases,
                e.conda,
            )
            for e in self._entries
        ]
        data = {
            "v": _CACHE_VERSION,
            "stamp": stamp,
            "entries": rows,
            "tops": {b: {t: sorted(ids) for t, ids in m.items()} for b, m in self._tops.items()},
            "abs": self._abs,
            "owned_dirs": self._owned_dirs,
            "by_key": self._by_key,
            "shadowed": self._shadowed,
            "absorbed": sorted(self._absorbed),
            "conflicts": self._conflicts,
            "findings": [(f.code, f.message) for f in self._findings],
        }
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as fh:
                marshal.dump(data, fh)
            os.replace(tmp, path)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _ensure(self, base: str, rel: str) -> None:
        """After a cache restore: claim the files of the candidates for `rel`'s top level."""
        if self._tops_complete:
            return
        top = rel.split("/", 1)[0]
        for i in self._tops.get(base, {}).get(top, ()):
            self._claim_entry(i)

    def _claim_entry(self, i: int) -> None:
        e = self._entries[i]
        if e.claimed or i in self._absorbed:
            return
        e.claimed = True
        if e.kind == "conda":
            if e.rels is None:
                self._load_conda(e)
            self._claim_conda(i, e)
            return
        if e.rels is None:
            if e.kind == "dist-info":
                self._load_record(e)
            else:
                self._load_egg(e)
        self._claim(i, e.base, e.rels or [])

    def _build(self) -> None:
        """Read every RECORD / conda record and build the ownership tables."""
        self._tops_complete = True
        for i, e in enumerate(self._entries):
            if e.kind == "conda":
                self._load_conda(e)
                e.claimed = True
                self._claim_conda(i, e)
        for e in self._entries:
            if e.kind == "dist-info" and not self._conda_wrote(e):
                self._load_record(e)  # first: the editable residue check needs owned_dirs
        residue = self._editable_residue()
        for i, e in enumerate(self._entries):
            if e.kind == "conda":
                continue
            if self._conda_wrote(e):
                # a dist-info written by conda: the conda record is the owner, this is an alias
                owner = self._tables[e.base][e.meta_path[len(e.base) + 1 :] + "/METADATA"]
                self._absorbed.add(i)
                self._entries[owner].aliases.append(e.key)
                if self._by_key.get(e.key) == i:
                    self._by_key[e.key] = owner
                continue
            if i in residue:
                self._absorbed.add(i)
                if self._by_key.get(e.key) == i:
                    self._by_key[e.key] = residue[i]
                continue
            if e.kind == "egg-info":
                self._load_egg(e)
            e.claimed = True
            self._claim(i, e.base, e.rels or [])
            for d in e.owned_dirs:
                self._owned_dirs.append((d.rstrip("/") + "/", i))
        self._resolve_duplicates()
        self._report_conflicts()

    def _editable_residue(self) -> dict[int, int]:
        """`.egg-info` directories that are build residue of an editable install (-> its dist-info).

        `pip install -e .` of a setuptools src layout writes `src/mypkg.egg-info` in the
        project and a `.pth` that puts `src/` on sys.path, so the scan meets the project's own
        egg-info beside the real, editable `mypkg-0.1.dist-info`. It is the same installation
        seen twice, not a second one: absorbed silently (no "installed twice" warning). An
        egg-info alone (`setup.py develop`) is the installation and stays.
        """
        editable: dict[str, list[tuple[int, set[str]]]] = {}
        for i, e in enumerate(self._entries):
            if e.kind == "dist-info" and e.owned_dirs:
                dirs = {os.path.normpath(d) for d in e.owned_dirs}
                editable.setdefault(e.key, []).append((i, dirs))
        out: dict[int, int] = {}
        for i, e in enumerate(self._entries):
            if e.kind != "egg-info":
                continue
            for j, dirs in editable.get(e.key, ()):
                if os.path.normpath(e.base) in dirs:
                    out[i] = j
                    break
        return out

    def _conda_wrote(self, e: _Entry) -> bool:
        table = self._tables.get(e.base)
        if table is None or e.kind != "dist-info":
            return False
        owner = table.get(e.meta_path[len(e.base) + 1 :] + "/METADATA")
        return owner is not None and self._entries[owner].kind == "conda"

    def _claim(self, i: int, base: str, rels: list[str]) -> None:
        plain, odd = rels, []
        if not _all_plain(rels):
            plain = [r for r in rels if r[:3] != "../"]  # scripts: ../../../bin/x
            odd = [r for r in rels if r[:3] == "../"]
            if not _all_plain(plain):
                odd += [r for r in plain if not _is_plain(r)]
                plain = [r for r in plain if _is_plain(r)]
        for r in odd:
            self._claim_abs(i, _join(base, r))
        table = self._tables.setdefault(base, {})
        if self._tops_complete:
            tops = self._tops.setdefault(base, {})
            for top in {r.split("/", 1)[0] for r in plain}:
                tops.setdefault(top, []).append(i)
        new = dict.fromkeys(plain, i)
        common = table.keys() & new.keys()
        prev = {rel: table[rel] for rel in common}
        table.update(new)
        for rel, j in prev.items():
            if j == i:
                continue
            path = base + "/" + rel
            owners = self._conflicts.setdefault(path, [j])
            if i not in owners:
                owners.append(i)
            owners.sort(key=self._rank)
            table[rel] = owners[0]

    def _claim_abs(self, i: int, path: str) -> None:
        j = self._abs.get(path)
        if j is None or j == i:
            self._abs[path] = i
            return
        owners = self._conflicts.setdefault(path, [j])
        if i not in owners:
            owners.append(i)
        owners.sort(key=self._rank)
        self._abs[path] = owners[0]

    def _claim_conda(self, i: int, e: _Entry) -> None:
        """Conda paths under a site dir go into that dir's table, so pip and conda meet."""
        rels = e.rels or []
        subs = sorted(
            (
                (d[len(e.base) + 1 :] + "/", d)
                for d in self._site_dirs
                if d.startswith(e.base + "/")
            ),
            key=lambda sd: -len(sd[0]),  # deepest first: site-packages inside lib/python3.X
        )
        buckets: dict[str, list[str]] = {e.base: []}
        for r in rels:
            for sub, d in subs:
                if r.startswith(sub):
                    buckets.setdefault(d, []).append(r[len(sub) :])
                    break
            else:
                buckets[e.base].append(r)
        for base, lst in buckets.items():
            self._claim(i, base, lst)

    def _rank(self, i: int) -> tuple[int, int, str]:
        e = self._entries[i]
        # first on sys.path wins; at equal position pip (the later writer) before conda
        return (e.order, 0 if e.kind != "conda" else 1, e.key)

    def _load_conda(self, e: _Entry) -> None:
        try:
            with open(e.meta_path, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            name = data["name"]
            version = data["version"]
            files = data.get("files") or []
            if not isinstance(name, str) or not isinstance(version, str):
                raise ValueError("name/version are not strings")
        except (OSError, ValueError, KeyError) as exc:
            raise MetadataError(
                f"corrupt conda record {e.meta_path}: {exc}",
                hint="repair the environment (conda install --force-reinstall) or remove the record",
            ) from exc
        e.conda = {k: data.get(k) for k in ("name", "version", "build", "channel", "depends")}
        e.key = normalize(name)
        e.rels = [f for f in files if isinstance(f, str)]

    def _load_record(self, e: _Entry) -> None:
        text = _read_text(e.meta_path + "/RECORD")
        if text is None:
            e.error = f"{e.meta_path}/RECORD is missing"
            return
        try:
            e.rels = _record_rels(text)
        except csv.Error as exc:
            e.error = f"{e.meta_path}/RECORD is not valid CSV: {exc}"
            return
        e.owned_dirs = self._editable_dirs(e)

    def _editable_dirs(self, e: _Entry) -> tuple[str, ...]:
        """Source directories an editable install puts on the path (its .pth lines / finder)."""
        raw = _read_text(e.meta_path + "/direct_url.json")
        if raw is None or '"editable"' not in raw:
            return ()
        hooks = _pth_hooks(e.files())
        return tuple(
            dict.fromkeys(
                [*hooks.dirs, *(_mapped_dir(p) for _, p in hooks.mapping)],
            )
        )

    def _load_egg(self, e: _Entry) -> None:
        listing = _read_text(e.meta_path + "/installed-files.txt")
        egg = e.meta_path[len(e.base) + 1 :]
        if listing is not None:
            # installed-files.txt is relative to the .egg-info directory itself
            e.rels = [
                os.path.normpath(f"{egg}/{line.strip()}")
                for line in listing.splitlines()
                if line.strip()
            ]
            return
        tops = (_read_text(e.meta_path + "/top_level.txt") or "").split()
        rels = [f"{egg}/PKG-INFO"]
        dirs = []
        for top in tops:
            if os.path.isfile(f"{e.base}/{top}.py"):
                rels.append(f"{top}.py")
            else:
                dirs.append(f"{e.base}/{top}")
        e.rels = rels
        e.owned_dirs = tuple(dirs)

    def _resolve_duplicates(self) -> None:
        seen: dict[str, int] = {}
        for i, e in enumerate(self._entries):
            if i in self._absorbed:
                continue
            prev = seen.get(e.key)
            if prev is None:
                seen[e.key] = i
                continue
            winner, loser = (prev, i) if self._rank(prev) <= self._rank(i) else (i, prev)
            seen[e.key] = winner
            self._by_key[e.key] = winner
            self._shadowed.append(loser)
            w, lo = self._entries[winner], self._entries[loser]
            self._findings.append(
                Finding(
                    "duplicate-distribution",
                    f"{e.key} is installed twice: {w.meta_path} ({w.version_hint or '?'}) is "
                    f"used, {lo.meta_path} ({lo.version_hint or '?'}) is shadowed",
                )
            )
        for e in self._entries:
            if e.error:
                self._findings.append(
                    Finding("corrupt-metadata", f"{e.error}; {e.key} is ignored unless needed")
                )

    def _report_conflicts(self) -> None:
        pairs: dict[tuple[int, ...], list[str]] = {}
        for path, claimants in self._conflicts.items():
            pairs.setdefault(tuple(claimants), []).append(path)
        for group, paths in pairs.items():
            names = [self._entries[i] for i in group]
            self._findings.append(
                Finding(
                    "owner-conflict",
                    f"{len(paths)} file(s) (e.g. {sorted(paths)[0]}) are claimed by "
                    + ", ".join(f"{n.key} ({n.meta_path})" for n in names)
                    + f"; {names[0].key} is taken as the owner (first on sys.path)",
                )
            )

    # -- parsed distributions ------------------------------------------------------------

    def _dist(self, i: int) -> Distribution:
        e = self._entries[i]
        if e.dist is not None:
            return e.dist
        self._load()
        self._claim_entry(i)  # after a cache restore its file list is read only now
        if e.error:
            raise MetadataError(
                e.error, hint="reinstall that distribution (pip install --force-reinstall)"
            )
        if e.kind == "conda":
            assert e.conda is not None
            data = e.conda
            depends = data.get("depends") or []
            e.dist = Distribution(
                name=str(data["name"]),
                version=str(data["version"]),
                source="conda",
                metadata_path=e.meta_path,
                files=e.files(),
                requires=tuple(str(d) for d in depends) if isinstance(depends, list) else (),
                installer="conda",
                build=str(data["build"]) if data.get("build") is not None else None,
                channel=str(data["channel"]) if data.get("channel") is not None else None,
            )
            return e.dist
        meta_file = e.meta_path + ("/METADATA" if e.kind == "dist-info" else "/PKG-INFO")
        text = _read_text(meta_file)
        if text is None:
            raise MetadataError(f"{meta_file} is missing", hint="reinstall that distribution")
        headers = _metadata_headers(text, ("name", "version", "requires-dist"))
        name = (headers.get("name") or [""])[0]
        version = (headers.get("version") or [""])[0]
        if not name or not version:
            e.error = f"{meta_file} has no Name/Version header"
            raise MetadataError(
                e.error, hint="reinstall that distribution (pip install --force-reinstall)"
            )
        requires = tuple(headers.get("requires-dist", ()))
        installer = None
        if e.kind == "dist-info":
            raw_inst = _read_text(e.meta_path + "/INSTALLER")
            installer = (raw_inst.strip() or None) if raw_inst is not None else None
        editable, url = False, None
        raw = _read_text(e.meta_path + "/direct_url.json")
        if raw is not None:
            try:
                du = json.loads(raw)
                url = str(du.get("url")) if du.get("url") else None
                editable = bool((du.get("dir_info") or {}).get("editable", False))
            except (ValueError, AttributeError) as exc:
                raise MetadataError(
                    f"{e.meta_path}/direct_url.json is not valid JSON: {exc}",
                    hint="reinstall that distribution",
                ) from exc
        if e.kind == "egg-info" and e.base in self._develop:
            # `setup.py develop`: the .egg-info sits in the project, which an `.egg-link` names
            editable, url = True, "file://" + e.base
        e.dist = Distribution(
            name=str(name),
            version=str(version),
            source="pip",
            metadata_path=e.meta_path,
            files=e.files(),
            requires=requires,
            installer=installer,
            editable=editable,
            direct_url=url,
        )
        return e.dist

    # -- public API ---------------------------------------------------------------------

    @property
    def distributions(self) -> tuple[Distribution, ...]:
        """Every distribution in use (shadowed duplicates and conda's dist-infos excluded)."""
        self._load()
        skip = self._absorbed | set(self._shadowed)
        return tuple(
            self._dist(i) for i, e in enumerate(self._entries) if i not in skip and not e.error
        )

    @property
    def shadowed(self) -> tuple[Distribution, ...]:
        """Duplicates later on sys.path than the copy in use."""
        self._load()
        return tuple(self._dist(i) for i in self._shadowed if not self._entries[i].error)

    @property
    def fingerprint(self) -> str:
        """Changes whenever any installed metadata changes (keys caches built on the index)."""
        self._load()
        return self._fingerprint

    @property
    def findings(self) -> tuple[Finding, ...]:
        self._load()
        return tuple(self._findings)

    def get(self, name: str) -> Distribution | None:
        """The distribution in use for a project or conda name (PEP 503-normalized)."""
        key = normalize(name)
        self._load()
        i = self._by_key.get(key)
        if i is None:
            for j, e in enumerate(self._entries):
                if e.kind == "conda" and key in e.aliases:
                    return self._dist(j)
            return None
        return self._dist(i)

    def editables(self) -> tuple[EditableLayout, ...]:
        """Every editable install in use, with the roots its source is imported from.

        Cheap: a dist-info is only parsed when it has a `direct_url.json` saying editable
        (or is an `.egg-info` outside the site directories, a `setup.py develop`).
        """
        self._load()
        skip = self._absorbed | set(self._shadowed)
        out: list[EditableLayout] = []
        for i, e in enumerate(self._entries):
            if i in skip or e.error or e.kind == "conda":
                continue
            if e.kind == "dist-info":
                raw = _read_text(e.meta_path + "/direct_url.json")
                if raw is None or '"editable"' not in raw:
                    continue
            elif e.base not in self._develop:
                continue
            layout = editable_layout(self._dist(i))
            if layout is not None:
                out.append(layout)
        return tuple(out)

    def _bases(self) -> list[str]:
        return list(dict.fromkeys((*self._tables, *self._tops)))

    def _lookup(self, path: str) -> list[int] | None:
        found = self._conflicts.get(path)
        if found is not None:
            return found
        hits: list[int] = []
        j = self._abs.get(path)
        if j is not None:
            hits.append(j)
        for base in self._bases():
            if path.startswith(base) and path[len(base) : len(base) + 1] == "/":
                rel = path[len(base) + 1 :]
                self._ensure(base, rel)
                j = self._tables.get(base, {}).get(rel)
                if j is not None and j not in hits:
                    hits.append(j)
        if not hits:
            for d, i in self._owned_dirs:
                if path.startswith(d):
                    hits.append(i)
                    break
        hits.sort(key=self._rank)
        return hits or None

    def owners(self, path: str) -> tuple[Distribution, ...]:
        """Distributions claiming `path`, the one in use first (empty if unowned)."""
        self._load()
        norm = os.path.normpath(os.path.abspath(path))
        found = self._lookup(norm)
        if found is None:
            real = os.path.realpath(norm)
            if real != norm:
                found = self._lookup(real)
        if found is None:
            self._raise_if_broken_owner(norm)
            return ()
        return tuple(self._dist(i) for i in found)

    def owners_under(self, directory: str) -> tuple[Distribution, ...]:
        """Distributions owning any file below `directory` (namespace package portions)."""
        self._load()
        prefix = os.path.normpath(os.path.abspath(directory)) + "/"
        hits: list[int] = []
        for base in self._bases():
            if not prefix.startswith(base + "/"):
                continue
            sub = prefix[len(base) + 1 :]
            self._ensure(base, sub)
            for rel, i in self._tables.get(base, {}).items():
                if rel.startswith(sub) and i not in hits:
                    hits.append(i)
        for path, i in self._abs.items():
            if path.startswith(prefix) and i not in hits:
                hits.append(i)
        hits.sort(key=self._rank)
        return tuple(self._dist(i) for i in hits)

    def conflicts(self, path: str) -> tuple[Distribution, ...]:
        """All claimants of `path` when more than one distribution lists it."""
        self._load()
        return tuple(self._dist(i) for i in self._conflicts.get(os.path.normpath(path), ()))

    def _raise_if_broken_owner(self, path: str) -> None:
        for e in self._entries:
            if not e.error or not path.startswith(e.base + "/"):
                continue
            top = path[len(e.base) + 1 :].split("/", 1)[0].split(".", 1)[0]
            if normalize(top) == e.key:
                raise MetadataError(
                    f"cannot tell who owns {path}: {e.error}",
                    hint="reinstall that distribution (pip install --force-reinstall)",
                )


# --------------------------------------------------------------------------- editables


@dataclass(frozen=True)
class _Hooks:
    """What an editable install's `.pth` files put on the import path."""

    dirs: tuple[str, ...]  # directory lines (site.py adds them to sys.path)
    mapping: tuple[tuple[str, str], ...]  # (module name, file or directory) of a finder hook
    style: str


_IMPORT_LINE = re.compile(r"^import[ \t]")


def _finder_mapping(path: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """The name -> path table of a finder module an editable `.pth` imports.

    Two generators exist in the wild and both write literals, so they are read with `ast`
    (never imported): setuptools' PEP 660 `__editable___<name>_finder.py` (`MAPPING = {...}`)
    and the `editables` redirector used by hatch `dev-mode-exact` and PDM
    (`F.map_module('pkg', '/src/pkg/__init__.py')`).
    """
    import ast

    text = _read_text(path)
    if text is None or ("MAPPING" not in text and "map_module" not in text):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    pairs: list[tuple[str, str]] = []
    style = ""
    for node in ast.walk(tree):
        value: ast.expr | None = None
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "MAPPING" for t in node.targets)
        ) or (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "MAPPING"
        ):
            value = node.value
        if value is not None:
            try:
                table = ast.literal_eval(value)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(table, dict):
                style = "setuptools-finder"
                pairs += [
                    (k, v) for k, v in table.items() if isinstance(k, str) and isinstance(v, str)
                ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "map_module"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
        ):
            style = "editables"
            a0, a1 = node.args
            assert isinstance(a0, ast.Constant) and isinstance(a1, ast.Constant)
            pairs.append((str(a0.value), str(a1.value)))
    return (style, tuple(pairs)) if style else None


def _pth_hooks(files: Iterable[str]) -> _Hooks:
    """Read every `.pth` of one distribution: directory lines and imported finder modules."""
    files = tuple(files)
    dirs: list[str] = []
    mapping: list[tuple[str, str]] = []
    styles: list[str] = []
    by_name = {os.path.basename(f): f for f in files}
    for f in files:
        if not f.endswith(".pth"):
            continue
        for line in (_read_text(f) or "").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if _IMPORT_LINE.match(line):
                for stmt in line.split(";"):
                    m = re.match(r"^\s*import\s+([\w.]+)", stmt)
                    mod = by_name.get(f"{m.group(1)}.py") if m else None
                    found = _finder_mapping(mod) if mod else None
                    if found is not None:
                        styles.append(found[0])
                        mapping += found[1]
                continue
            d = os.path.normpath(os.path.join(os.path.dirname(f), line))
            if os.path.isdir(d):
                dirs.append(d)
                base = os.path.basename(d)
                styles.append("setuptools-strict" if base.startswith("__editable__.") else "pth")
    style = styles[0] if styles else "pth"
    return _Hooks(tuple(dict.fromkeys(dirs)), tuple(dict.fromkeys(mapping)), style)


def _mapped_dir(path: str) -> str:
    """The directory a finder entry names (a package's `__init__.py` -> its directory)."""
    path = os.path.normpath(path)
    return os.path.dirname(path) if os.path.basename(path).startswith("__init__.") else path


def _root_of(name: str, path: str) -> str | None:
    """The directory from which `name` is imported as `path`, if their spelling agrees.

    `mypkg` -> `/p/src/mypkg` gives `/p/src`; `ns.sub` -> `/p/src/ns/sub` gives `/p/src`;
    `mod` -> `/p/mod.py` gives `/p`. A finder that maps a name onto a directory of another
    name (setuptools `package_dir={"mypkg": "lib"}`) has no such root: None.
    """
    p = _mapped_dir(path)
    parts = name.split(".")
    leaf = os.path.basename(p)
    if os.path.isfile(p):
        leaf = leaf.split(".", 1)[0]
    if leaf != parts[-1]:
        return None
    root = os.path.dirname(p)
    for part in reversed(parts[:-1]):
        if os.path.basename(root) != part:
            return None
        root = os.path.dirname(root)
    return root


#: Top-level names in a project directory that are never the installed package (a flat
#: layout's `.pth` puts the whole project directory on sys.path).
_NOT_THE_PACKAGE = frozenset(
    {
        "test",
        "tests",
        "testing",
        "doc",
        "docs",
        "example",
        "examples",
        "benchmark",
        "benchmarks",
        "build",
        "dist",
        "setup",
        "conftest",
        "noxfile",
        "tasks",
        "scripts",
        "tools",
        "site-packages",
    }
)


def _top_level_names(root: str, dist: Distribution) -> tuple[str, ...]:
    """The importable top-level names under an editable's path directory.

    `top_level.txt` (setuptools) when the dist-info has one; else the package named like the
    project (flit's rule) when it is there; else every package/module of the directory but
    the usual non-package directories (tests, docs, ...).
    """
    listed = _read_text(os.path.join(dist.metadata_path, "top_level.txt"))
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return ()
    found: list[str] = []
    for n in entries:
        full = os.path.join(root, n)
        if os.path.isdir(full):
            if (
                n.isidentifier()
                and not n.startswith(".")
                and any(f.endswith(".py") for f in _safe_listdir(full))
            ):
                found.append(n)
        elif n.endswith(".py") and n[:-3].isidentifier():
            found.append(n[:-3])
        elif n.endswith(".so") and n.split(".", 1)[0].isidentifier():
            found.append(n.split(".", 1)[0])
    if listed:
        wanted = [n for n in listed.split() if n in found]
        if wanted:
            return tuple(wanted)
    guess = dist.key.replace("-", "_")
    if guess in found:
        return (guess,)
    return tuple(n for n in dict.fromkeys(found) if n.lower() not in _NOT_THE_PACKAGE)


def _safe_listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


@dataclass(frozen=True)
class EditableLayout:
    """How one editable install reaches its source, as far as lfm-pack can follow it."""

    dist: Distribution
    style: str
    roots: tuple[str, ...]  # directories its modules are imported from
    names: tuple[str, ...]  # its top-level modules
    unmapped: tuple[tuple[str, str], ...] = ()  # (module, path) that no root can express


def editable_layout(dist: Distribution) -> EditableLayout | None:
    """The roots and names of an editable install (None for an ordinary distribution).

    * `.pth` directory lines (setuptools src layouts and strict mode, hatch, flit, PDM, uv):
      the directory is a root; its names from `top_level.txt` or the directory itself;
    * finder hooks (setuptools PEP 660 flat layouts, `editables`): each mapped name's
      directory parent is a root, when name and directory agree;
    * legacy `setup.py develop` / egg-link: the `.egg-info` sits in the project directory that
      `easy-install.pth` puts on sys.path: that directory is the root.
    """
    if not dist.editable:
        return None
    if dist.metadata_path.endswith(".egg-info"):
        root = os.path.dirname(dist.metadata_path)
        return EditableLayout(dist, "develop", (root,), _top_level_names(root, dist))
    hooks = _pth_hooks(dist.files)
    roots = list(hooks.dirs)
    names = [n for d in hooks.dirs for n in _top_level_names(d, dist)]
    unmapped: list[tuple[str, str]] = []
    for name, path in hooks.mapping:
        mroot = _root_of(name, path)
        if mroot is None:
            unmapped.append((name, path))
            continue
        roots.append(mroot)
        names.append(name.split(".")[0])
    return EditableLayout(
        dist,
        hooks.style,
        tuple(dict.fromkeys(roots)),
        tuple(dict.fromkeys(names)),
        tuple(unmapped),
    )


_CACHE_VERSION = 2


def _cache_file(env: EnvInfo) -> str:
    """`${XDG_CACHE_HOME:-~/.cache}/lfm-pack/index/<hash of the environment's paths>.marshal`."""
    key = hashlib.sha256("\0".join((env.prefix, *env.sys_path)).encode()).hexdigest()[:32]
    return str(user_cache_dir("index", f"{key}.marshal"))


def _stamp(entries: list[_Entry], site_dirs: list[str]) -> list[tuple[str, int, int]]:
    """What the cached tables depend on: every scanned directory and every metadata file.

    pip and conda replace (never edit in place) RECORDs and conda-meta records, and adding
    or removing a distribution changes its directory's mtime, so (path, mtime_ns, size) of
    these is a sound validity check; ~0.5 ms of stat calls for 150 distributions.
    """
    out: list[tuple[str, int, int]] = []
    paths = [e.meta_path + "/RECORD" if e.kind == "dist-info" else e.meta_path for e in entries]
    for path in (*site_dirs, *paths):
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1))
            continue
        out.append((path, st.st_mtime_ns, st.st_size))
    conda_meta = next((os.path.dirname(e.meta_path) for e in entries if e.kind == "conda"), None)
    if conda_meta:
        st = os.stat(conda_meta)
        out.append((conda_meta, st.st_mtime_ns, st.st_size))
    return out


def _site_dirs(env: EnvInfo) -> list[str]:
    """Existing directories of the target's sys.path (deduplicated by realpath, order kept)."""
    out: list[str] = []
    seen: set[str] = set()
    for p in (*env.sys_path, *env.site_packages):
        norm = os.path.normpath(p)
        real = os.path.realpath(norm)
        if real in seen or not os.path.isdir(norm):
            continue
        seen.add(real)
        out.append(norm)
    return out


def _scan(env: EnvInfo) -> Iterable[_Entry]:
    dirs = _site_dirs(env)
    for order, d in enumerate(dirs):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                kind = "dist-info"
            elif n.endswith(".egg-info"):
                kind = "egg-info"
                if not os.path.isdir(f"{d}/{n}"):
                    continue
            else:
                continue
            key, version = _split_dirname(n)
            yield _Entry(
                kind=kind, meta_path=f"{d}/{n}", base=d, order=order, key=key, version_hint=version
            )
    meta = os.path.join(os.path.normpath(env.prefix), "conda-meta")
    try:
        records = sorted(n for n in os.listdir(meta) if n.endswith(".json"))
    except OSError:
        return
    prefix = os.path.normpath(env.prefix) + "/"
    sites = {os.path.normpath(p) for p in env.site_packages}
    sp_order = next(
        (i for i, d in enumerate(dirs) if d in sites and d.startswith(prefix)), len(dirs)
    )
    for n in records:
        stem = n[: -len(".json")]
        parts = stem.rsplit("-", 2)
        yield _Entry(
            kind="conda",
            meta_path=f"{meta}/{n}",
            base=os.path.normpath(env.prefix),
            order=sp_order,
            key=normalize(parts[0]),
            version_hint=parts[1] if len(parts) == 3 else "",
        )


def _develop_dirs(site_dirs: Iterable[str]) -> frozenset[str]:
    """Project directories of `setup.py develop` installs: what each `*.egg-link` names.

    An `.egg-info` outside the site directories is not enough evidence: Debian's system
    Python lists `/usr/lib/python3/dist-packages` on sys.path but not as its site directory,
    and its packages' egg-infos are ordinary installs. The egg-link (first line: the project
    directory, the one `easy-install.pth` adds to sys.path) is what develop writes.
    """
    out: set[str] = set()
    for d in site_dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if n.endswith(".egg-link"):
                first = (_read_text(os.path.join(d, n)) or "").splitlines()[:1]
                if first and first[0].strip():
                    out.add(os.path.normpath(os.path.join(d, first[0].strip())))
    return frozenset(out)


def load_index(env: EnvInfo) -> DistIndex:
    """Index the target environment's installed distributions (cheap: reads directory names)."""
    return DistIndex(env, list(_scan(env)), _site_dirs(env))
