"""The `grade:` section of a task file: what `agent eval` checks after a run (commands, files, claims).

Plain configuration, part of the task-file format; the graders that run it live in `agent.eval.grading`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CommandCheck(BaseModel):
    """A shell command run in the sandbox, in the final workspace; it passes on exit code 0."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="Shell command line (sh -c)")
    name: str | None = Field(None, description="Label in reports; default: the command")
    timeout_s: float | None = Field(None, gt=0, description="Seconds; default grade.timeout_s")


class FileCheck(BaseModel):
    """A check of one path in the final workspace. Expected files are read from `grade.groundtruth`
    (default: the task file's folder)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str = Field(description="Path relative to the workspace")
    exists: bool = Field(True, description="false: the path must not exist")
    equals: str | None = Field(None, description="Expected file: same text after `normalize`")
    text: str | None = Field(None, description="Expected text, inline: same after `normalize`")
    normalize: Literal["none", "strip", "whitespace", "lines"] = Field(
        "strip", description="none; strip (ends); lines (each line stripped, blank lines dropped); "
        "whitespace (all whitespace removed, as Toolathlon's checkers compare)")
    ignore_case: bool = False
    contains: list[str] = Field(default_factory=list, description="Substrings that must occur")
    not_contains: list[str] = Field(default_factory=list, description="Substrings that must not occur")
    matches: str | None = Field(None, description="A regular expression that must match somewhere (multiline)")
    json_file: str | None = Field(None, alias="json", description="Expected JSON file: equal, numbers within tolerance")
    json_value: Any = Field(None, description="Expected JSON value, inline")
    csv_file: str | None = Field(None, alias="csv", description="Expected CSV file: same header and cells")
    ignore_row_order: bool = Field(False, description="CSV: compare rows as a multiset")
    tree: str | None = Field(None, description="Expected folder: the same set of relative file paths")
    tree_contents: bool = Field(False, description="tree: also compare each file's text after `normalize`")
    tolerance: float = Field(1e-6, ge=0, description="Absolute tolerance for numbers (JSON, CSV)")
    rel_tolerance: float = Field(0.0, ge=0, description="Relative tolerance for numbers (JSON, CSV)")

    @property
    def label(self) -> str:
        kinds = [k for k in ("equals", "text", "contains", "not_contains", "matches", "json_file", "json_value",
                             "csv_file", "tree") if getattr(self, k) not in (None, [])]
        if not self.exists:
            kinds = ["absent"]
        return f"{self.path} ({', '.join(k.removesuffix('_file') for k in kinds) or 'exists'})"


class Claim(BaseModel):
    """One atomic claim the final answer must make. The judge model reads `claim`; without a judge, the
    deterministic matcher checks `numbers`, `contains` and `regex` (default: the numbers and "quoted" text
    found in the claim)."""

    model_config = ConfigDict(extra="forbid")

    claim: str
    numbers: list[float] | None = Field(None, description="Numbers the answer must state")
    contains: list[str] | None = Field(None, description="Text the answer must contain (case-insensitive)")
    regex: str | None = Field(None, description="A regular expression the answer must match (case-insensitive)")
    tolerance: float | None = Field(None, ge=0, description="Absolute tolerance for numbers; default: half a "
                                    "unit of the claim's last decimal place")


class GradeSpec(BaseModel):
    """The `grade:` section of a task file."""

    model_config = ConfigDict(extra="forbid")

    groundtruth: Path | None = Field(None, description="Folder of expected artifacts (Toolathlon's "
                                     "groundtruth_workspace); relative to the task file")
    script: Path | None = Field(None, description="A checker run with the Toolathlon contract: "
                                "--agent_workspace --groundtruth_workspace --res_log_file --launch_time")
    commands: list[CommandCheck] = Field(default_factory=list, description="Shell commands; exit 0 = pass")
    files: list[FileCheck] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list, description="Claims the final answer must make")
    pass_coverage: float = Field(0.75, ge=0, le=1, description="Claims: pass when the mean claim score reaches it")
    judge: Literal["auto", "model", "match"] = Field(
        "auto", description="Claims: model (an LLM judge), match (deterministic), auto (model when one is configured)")
    judge_model: str | dict[str, Any] | None = Field(None, description="Model string or mapping of the judge")
    timeout_s: float = Field(300.0, gt=0, description="Seconds per command or script")

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "command" in data:  # one command
                data["commands"] = [data.pop("command"), *data.get("commands", [])]
            data["commands"] = [{"run": c} if isinstance(c, str) else c for c in data.get("commands") or []]
            data["claims"] = [{"claim": c} if isinstance(c, str) else c for c in data.get("claims") or []]
        return data

    @property
    def empty(self) -> bool:
        return not (self.script or self.commands or self.files or self.claims)

    def resolved(self, base: Path) -> GradeSpec:
        """Paths made absolute: groundtruth and script against `base` (the task folder), expected files
        against the ground truth (or `base` when there is none)."""

        def absolute(value: Path | str | None, against: Path) -> Any:
            if value is None:
                return None
            path = Path(value)
            return path if path.is_absolute() else against / path

        groundtruth = absolute(self.groundtruth, base)
        expected = groundtruth or base
        files = [check.model_copy(update={name: str(absolute(getattr(check, name), expected))
                                          for name in ("equals", "json_file", "csv_file", "tree")
                                          if getattr(check, name) is not None}) for check in self.files]
        return self.model_copy(update={"groundtruth": groundtruth, "script": absolute(self.script, base),
                                       "files": files})
