"""Finding a suite's tasks: suite files, task files, Toolathlon task folders and MCP-Atlas rows; selecting them
by id; attaching each task's scripted solution for `--scripted NAME`."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..task import TaskSpec, describe_validation_error, load_task
from . import atlas, importers, toolathlon

SUITE_FILE = "suite.yaml"


class SuiteSpec(BaseModel):
    """A suite file (`suite.yaml`): which task files belong to it and what the suite provides them."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Default: the suite folder's name")
    description: str | None = None
    tasks: list[str] = Field(default_factory=lambda: ["**/task.yaml"],
                             description="Globs of task files, relative to the suite folder")
    site: Path | None = Field(None, description="A folder served on http://127.0.0.1:PORT while the suite runs; "
                              "${SITE_URL} in task files and scripts becomes its URL")
    timeout_s: float | None = Field(None, gt=0, description="Wall time per run (workspace, agent, grading)")
    judge_model: str | dict[str, Any] | None = Field(None, description="Judge for claims when --judge is not given")


@dataclass
class LoadedSuite:
    spec: SuiteSpec
    folder: Path

    @property
    def name(self) -> str:
        return self.spec.name or self.folder.name


@dataclass
class EvalTask:
    """A runnable task of the suite."""

    id: str
    spec: TaskSpec
    source: str
    kind: str = "task"  # task | toolathlon | atlas
    folder: Path | None = None  # where solutions/ scripts are looked up (Atlas rows: the row's solutions folder)
    suite: LoadedSuite | None = None
    warnings: list[str] = field(default_factory=list)
    script: Path | None = None  # --scripted: the trajectory to replay (None with --scripted nothing: built in)
    servers_used: dict[str, str] = field(default_factory=dict)  # imported tasks: benchmark server -> who serves it


@dataclass
class SkippedTask:
    """A task that cannot run here, and why (reported before anything runs)."""

    id: str
    source: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)  # each thing it lacks here (imported tasks)


@dataclass
class Discovery:
    tasks: list[EvalTask] = field(default_factory=list)
    skipped: list[SkippedTask] = field(default_factory=list)


@dataclass
class ImportOptions:
    servers: Path | None = None  # mcpServers entries for benchmark servers we do not ship
    atlas_data: Path | None = None
    toolathlon_root: Path | None = None
    grader_python: Path | None = None  # Toolathlon checkers/preprocess: default the root's .venv
    our_servers: bool = False  # our files/shell/web stand in for Toolathlon's filesystem/terminal/fetch
    services: tuple[str, ...] = ()  # external services that are running (canvas, emails, ...)


def load_suite(path: Path) -> LoadedSuite:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        spec = SuiteSpec.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc, SuiteSpec)}") from None
    folder = path.parent.resolve()
    if spec.site is not None and not spec.site.is_absolute():
        spec = spec.model_copy(update={"site": folder / spec.site})
    return LoadedSuite(spec, folder)


def discover(paths: Sequence[Path], options: ImportOptions | None = None) -> Discovery:
    """Every task under `paths`: suite folders or files, task files, Toolathlon task folders (or folders of
    them), MCP-Atlas CSV/JSONL/JSON files. Tasks that cannot run here are in `skipped` with the reason."""
    options = options or ImportOptions()
    entries = importers.read_server_entries(options.servers)
    servers = entries.specs
    found = Discovery()
    roots: dict[Path, toolathlon.ToolathlonRoot] = {}

    def toolathlon_root(task_folder: Path) -> toolathlon.ToolathlonRoot | None:
        """The checkout a Toolathlon task runs with, opened once per suite."""
        where = options.toolathlon_root or toolathlon.find_root(task_folder.resolve())
        if where is None:
            return None
        where = where.resolve()
        if where not in roots:
            roots[where] = toolathlon.ToolathlonRoot.open(where, options.grader_python)
        return roots[where]

    def add_task_file(path: Path, suite: LoadedSuite | None) -> None:
        try:
            spec = load_task(path)
        except ConfigError as exc:
            found.skipped.append(SkippedTask(path.parent.name if path.name == "task.yaml" else path.stem,
                                             str(path), f"bad task file: {exc}"))
            return
        task_id = spec.name or (path.parent.name if path.name == "task.yaml" else path.stem)
        found.tasks.append(EvalTask(task_id, spec, str(path), "task", path.parent.resolve(), suite))

    def add_imported(imported: importers.ImportedTask) -> None:
        if imported.runnable:
            assert imported.spec is not None
            folder = Path(imported.source) if imported.kind == "toolathlon" else None
            if imported.kind == "atlas":  # "<file>:row N"
                folder = atlas.solutions_folder(imported.source.rsplit(":row ", 1)[0], imported.id)
            found.tasks.append(EvalTask(imported.id, imported.spec, imported.source, imported.kind, folder,
                                        None, list(imported.warnings), servers_used=dict(imported.servers)))
        else:
            found.skipped.append(SkippedTask(imported.id, imported.source, imported.problem or "cannot run",
                                             list(imported.warnings), list(imported.needs)))

    def visit(path: Path, depth: int) -> None:
        if path.is_file():
            suffix = path.suffix.lower()
            if path.name == SUITE_FILE:
                visit_suite(path)
            elif suffix in (".yaml", ".yml"):
                add_task_file(path, None)
            elif suffix in (".csv", ".jsonl", ".json"):
                for imported in atlas.import_atlas_rows(path, servers=servers, data=options.atlas_data,
                                                        unavailable=entries.unavailable):
                    add_imported(imported)
            else:
                raise ConfigError(f"{path}: not a task file, suite, Toolathlon folder or MCP-Atlas file")
            return
        if not path.is_dir():
            raise ConfigError(f"{path}: no such file or folder")
        if (path / SUITE_FILE).is_file():
            visit_suite(path / SUITE_FILE)
        elif toolathlon.is_toolathlon_task(path):
            add_imported(toolathlon.import_toolathlon_task(
                path, servers=servers, toolathlon_root=toolathlon_root(path), our_servers=options.our_servers,
                services=options.services))
        elif (path / "task.yaml").is_file():
            add_task_file(path / "task.yaml", None)
        elif depth < 3:
            for child in sorted(path.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    visit(child, depth + 1)

    def visit_suite(path: Path) -> None:
        suite = load_suite(path)
        files = sorted({p.resolve() for pattern in suite.spec.tasks for p in suite.folder.glob(pattern)})
        if not files:
            raise ConfigError(f"{path}: no task files match {suite.spec.tasks}")
        for file in files:
            add_task_file(file, suite)

    for path in paths:
        visit(Path(path), 0)
    _unique_ids(found.tasks)
    return found


def _unique_ids(tasks: list[EvalTask]) -> None:
    seen: dict[str, int] = {}
    for task in tasks:
        count = seen.get(task.id, 0) + 1
        seen[task.id] = count
        if count > 1:
            task.id = f"{task.id}-{count}"


def select(tasks: list[EvalTask], patterns: Sequence[str]) -> list[EvalTask]:
    """Tasks whose id matches one of `patterns` (a glob when it has * ? or [, else a substring)."""
    if not patterns:
        return tasks
    return [t for t in tasks if id_matches(t.id, patterns)]


def id_matches(task_id: str, patterns: Sequence[str]) -> bool:
    """Whether `task_id` matches one of `patterns` (a glob when it has * ? or [, else a substring)."""
    return any(fnmatch.fnmatchcase(task_id, p) if any(ch in p for ch in "*?[") else p in task_id for p in patterns)


def attach_scripts(found: Discovery, name: str) -> None:
    """--scripted NAME: each task replays `solutions/NAME.yaml` beside its task file (`reference` may be the
    task's `demo`; `nothing` has a built-in do-nothing answer); an MCP-Atlas row replays
    `<rows file stem>.solutions/<TASK>/NAME.yaml` beside its rows file. Tasks without one are skipped."""
    kept = []
    for task in found.tasks:
        where = task.folder if task.kind == "atlas" else (task.folder / "solutions" if task.folder else None)
        candidates = [where / f"{name}.yaml"] if where else []
        if name == "reference" and task.spec.demo is not None:
            candidates.append(task.spec.demo)
        script = next((p for p in candidates if p.is_file()), None)
        if script is None and name != "nothing":
            expected = where / f"{name}.yaml" if task.kind == "atlas" and where else f"solutions/{name}.yaml"
            found.skipped.append(SkippedTask(task.id, task.source, f"no scripted trajectory '{name}' "
                                             f"({expected})", task.warnings))
            continue
        task.script = script
        kept.append(task)
    found.tasks = kept
