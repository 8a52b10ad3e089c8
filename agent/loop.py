"""The agent loop: each step chooses a think mode, streams one assistant turn and runs its tool calls.

The loop owns only the step logic; the model client, the tool hub, the conversation, the hooks and the event
sink are passed in. A step ends the run by raising `Stop` (an answer, a claim_done call, a limit).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from agent.tools.hub import ToolHub
from agent.tools.local import CLAIM_DONE
from agent.tools.results import ToolOutcome, error_outcome

from .context import SUMMARY_SYSTEM, ContextKeeper, Conversation, is_context_error, transcript
from .errors import BadRequestError, OutputRejectedError
from .events import (
    ContextCompacted,
    Event,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ModelRetry,
    ThinkChosen,
    ToolCallInfo,
    ToolCallStarted,
    ToolResult,
    ToolsChanged,
)
from .hooks import Hooks, ModelRequestInfo, StepRecord, StopRun, ToolCallRequest
from .limits import Limits
from .models.base import AssistantTurn, DeltaFn, ModelClient, ToolCall, dumps
from .output import FINAL_RESULT, OutputInvalid, OutputSpec
from .result import StopReason
from .think import RunState, ThinkMode, ThinkPolicy, ToolOutcomeSummary, call_key
from .usage import ModeStats, Usage

if TYPE_CHECKING:
    from .run import RunContext

Emit = Callable[[Event], None]
T = TypeVar("T")


class Stop(Exception):
    """Ends the run with a stop reason (and the answer, when there is one; a hook's reason for `stopped`)."""

    def __init__(self, reason: StopReason, answer: str | None = None, detail: str | None = None,
                 record: StepRecord | None = None, output: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.answer = answer
        self.detail = detail
        self.record = record
        self.output = output
        """The validated structured output, when the run has an output type."""
        """The step that ended the run, when one did (an answer, claim_done)."""


@dataclass
class LoopTotals:
    steps: int = 0
    tool_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    think: dict[str, ModeStats] = field(default_factory=dict)


class AgentLoop:
    def __init__(
        self,
        *,
        model: ModelClient,
        hub: ToolHub,
        conversation: Conversation,
        policy: ThinkPolicy,
        limits: Limits,
        emit: Emit,
        context: ContextKeeper,
        hooks: Sequence[Hooks] = (),
        run_context: RunContext | None = None,
        output: OutputSpec | None = None,
    ):
        self.hooks = list(hooks)
        self.output = output
        self._output_failures = 0
        self.ctx = run_context
        self.model = model
        self.context = context
        self.hub = hub
        self.conversation = conversation
        self.policy = policy
        self.limits = limits
        self.emit = emit
        self.totals = LoopTotals()
        # Serialised once: the tool list is part of the byte-stable prompt prefix.
        self._tools_json = self._serialise_tools()
        context.set_tools(self._tools_json)
        self._state = RunState(step=0, max_steps=limits.max_steps, new_user_message=True,
                               max_invalidates_cache=model.profile.max_invalidates_cache)

    async def step(self) -> StepRecord:
        """One step; raises `Stop` when the run ends (before the step for limits, after it otherwise)."""
        limits, totals = self.limits, self.totals
        if totals.steps >= limits.max_steps:
            raise Stop(StopReason.max_steps)
        if limits.max_total_tokens is not None and totals.usage.total_tokens >= limits.max_total_tokens:
            raise Stop(StopReason.token_budget)
        totals.steps += 1
        step = totals.steps
        if self.hub.tools_changed and await self.hub.refresh():
            # Applied only here, between steps: the prompt prefix changes once, when a server asked for it.
            self._tools_json = self._serialise_tools()
            self.context.set_tools(self._tools_json)
            self.emit(ToolsChanged(step=step, version=self.hub.tools_version, tools=[t.name for t in self.hub.tools]))
        self._state.step = step
        if self.ctx is not None:
            self.ctx.step = step
        choice = self.policy.choose(self._state)
        mode = choice.mode
        if self.hooks:
            mode = await self._before_request(step, mode)
        self.emit(ThinkChosen(step=step, mode=mode.value, reason=choice.reason if mode == choice.mode
                              else f"{choice.reason}; changed to {mode.value} by a hook"))

        if truncation := self.context.apply_truncation(self.conversation):
            # The model asked for it (manage_context): whole turns leave the context, traced like a compaction.
            self.emit(ContextCompacted(
                step=step, reason=f"manage_context: {truncation.method}({truncation.value}) removed "
                                  f"{truncation.deleted_turns} turns", removed_messages=truncation.deleted_messages,
                tokens_before=truncation.tokens_before, tokens_after=truncation.tokens_after, summary=""))
        if reason := self.context.compaction_due(self.conversation):
            await self._compact(step, reason)
        self.context.check_fits(self.conversation)  # a prompt that cannot fit is refused, not sent
        try:
            turn = await self._request(step, mode)
        except BadRequestError as exc:
            # The endpoint says the prompt does not fit: compact once and retry instead of failing the run.
            if not is_context_error(str(exc)) or not await self._compact(step, "the endpoint refused the "
                                                                                "prompt as too long"):
                raise
            turn = await self._request(step, mode)
        cost = self._account(turn, mode)
        self.emit(_response_event(step, turn, cost))
        self.conversation.append(turn.message())
        self._state.previous_mode = mode
        self._state.new_user_message = False
        self._state.reasoning_tokens_used = totals.usage.reasoning_tokens

        record = StepRecord(step, mode, choice.reason, turn, cost, turn.tool_calls)
        if not turn.tool_calls:
            await self._after_step(record)
            if self.output is None:
                raise Stop(StopReason.answer, turn.content, record=record)
            try:
                value = self.output.from_text(turn.content)
            except OutputInvalid as invalid:
                self._output_rejected(str(invalid))
                self.conversation.append({"role": "user", "content": (
                    f"Your answer was not accepted: {invalid}. Call {FINAL_RESULT} with the answer as its "
                    "arguments, matching its schema.")})
                return record
            raise Stop(StopReason.answer, turn.content, record=record, output=value)
        if totals.tool_calls + len(turn.tool_calls) > limits.max_tool_calls:
            raise Stop(StopReason.max_tool_calls, turn.content or None)
        totals.tool_calls += len(turn.tool_calls)
        outcomes = await self._run_tools(step, turn.tool_calls)
        self._observe(turn.tool_calls, outcomes)
        record = replace(record, outcomes=outcomes)
        await self._after_step(record)
        for call, outcome in zip(turn.tool_calls, outcomes, strict=True):
            if call.name == CLAIM_DONE and not outcome.is_error:
                raise Stop(StopReason.claim_done, _claim_summary(call) or turn.content or None, record=record)
            if call.name == FINAL_RESULT and self.output is not None:
                if not outcome.is_error:
                    raise Stop(StopReason.answer, turn.content or outcome.text, record=record,
                               output=outcome.structured)
                self._output_rejected(outcome.text)
        return record

    # -- structured output -----------------------------------------------------------------------

    def _serialise_tools(self) -> bytes | None:
        """The tool list, serialised once (part of the byte-stable prompt prefix); final_result last."""
        tools = self.hub.openai_tools
        if self.output is not None:
            tools = [*tools, self.output.openai_tool()]
        return dumps(tools) if tools else None

    def _final_result(self, call: ToolCall) -> ToolOutcome:
        """Validate a final_result call: accepted (the value rides in `structured`), or the reasons."""
        assert self.output is not None
        try:
            value = self.output.from_arguments(call.arguments)
        except OutputInvalid as invalid:
            return error_outcome(f"The final result was not accepted: {invalid}. Call {FINAL_RESULT} again with "
                                 "arguments that match its schema.")
        return ToolOutcome(text="Final result accepted.", structured=value)

    def _output_rejected(self, why: str) -> None:
        """Count an invalid output; past the retries the run ends with an error."""
        assert self.output is not None
        self._output_failures += 1
        if self._output_failures > self.output.max_retries:
            raise OutputRejectedError(
                f"the model gave no valid structured output in {self._output_failures} tries "
                f"(output retries: {self.output.max_retries}); the last problem: {why}")

    # -- hooks -------------------------------------------------------------------------------------

    async def _before_request(self, step: int, mode: ThinkMode) -> ThinkMode:
        assert self.ctx is not None
        for hook in self.hooks:
            info = ModelRequestInfo(step=step, mode=mode, messages=len(self.conversation),
                                    tools=[t.name for t in self.hub.tools])
            change = await self._hooked(hook.before_model_request(self.ctx, info))
            if change is None:
                continue
            for message in change.append:
                self.conversation.append(dict(message))
            mode = change.mode or mode
        return mode

    async def _after_step(self, record: StepRecord) -> None:
        for hook in self.hooks:
            assert self.ctx is not None
            await self._hooked(hook.after_step(self.ctx, record))

    @staticmethod
    async def _hooked(result: Awaitable[T]) -> T:
        """A hook's result; its StopRun ends the run with stop reason `stopped`."""
        try:
            return await result
        except StopRun as stop:
            raise Stop(StopReason.stopped, detail=stop.reason) from None

    async def _call_tool(self, step: int, call: ToolCall) -> ToolOutcome:
        """Run one call through the hooks: before (allow / deny / rewrite), the call, after (rewrite)."""
        if call.name == FINAL_RESULT and self.output is not None:
            return self._final_result(call)  # the framework's own answer channel, not a tool to guard
        if not self.hooks:
            return await self.hub.call(call.name, call.arguments)
        assert self.ctx is not None
        arguments: dict[str, Any] | str | None = call.arguments
        try:
            parsed = json.loads(call.arguments) if call.arguments else {}
            arguments = parsed if isinstance(parsed, dict) else call.arguments
        except ValueError:
            pass
        request = ToolCallRequest(step=step, call_id=call.id, tool=call.name, arguments=arguments,
                                  info=self.hub.info(call.name))
        outcome: ToolOutcome | None = None
        for hook in self.hooks:
            decision = await self._hooked(hook.before_tool_call(self.ctx, request))
            if decision is None or decision.action == "allow":
                continue
            if decision.action == "deny":
                outcome = error_outcome(f"The call to {call.name} was refused: {decision.reason}")
                break
            request = replace(request, arguments=decision.arguments)
        if outcome is None:
            outcome = await self.hub.call(call.name, request.arguments)
        for hook in self.hooks:
            outcome = await self._hooked(hook.after_tool_call(self.ctx, request, outcome)) or outcome
        return outcome

    async def _request(self, step: int, mode: ThinkMode) -> AssistantTurn:
        body = self.model.request_body(self.conversation.wire, tools_json=self._tools_json, mode=mode)
        chars = self.context.prompt_chars(self.conversation)
        self.emit(ModelRequest(step=step, mode=mode.value, messages=len(self.conversation), body_bytes=len(body),
                               context_tokens=self.context.tokens_now(self.conversation),
                               window_tokens=self.context.config.window_tokens))

        def on_delta(kind: str, text: str) -> None:
            self.emit(ModelDelta(step=step, kind=kind, text=text))

        turn = await self._complete(step, body, on_delta)
        self.context.observe_usage(chars, turn.usage)
        return turn

    async def _complete(self, step: int, body: bytes, on_delta: DeltaFn | None = None) -> AssistantTurn:
        """One model call with its retries; every attempt counts as a request, failed ones included."""
        failed = 0

        async def on_retry(attempt: int, error: str, delay: float) -> None:
            nonlocal failed
            failed += 1
            self.emit(ModelRetry(step=step, attempt=attempt, error=error, delay_s=round(delay, 3)))

        try:
            turn = await self.model.complete(body, on_delta=on_delta, on_retry=on_retry)
        except Exception:
            self.totals.usage = self.totals.usage + Usage(requests=failed + 1, failed_requests=failed + 1)
            raise
        if failed:
            turn.usage = turn.usage.model_copy(update={"requests": turn.usage.requests + failed,
                                                       "failed_requests": turn.usage.failed_requests + failed})
        return turn

    def _account(self, turn: AssistantTurn, mode: ThinkMode | None = None) -> float:
        """Add a turn's usage and cost to the run (and to its think mode's figures for agent steps)."""
        cost = self.model.cost(turn.usage)
        self.totals.usage = self.totals.usage + turn.usage
        self.totals.cost += cost
        if mode is not None:
            stats = self.totals.think.setdefault(mode.value, ModeStats())
            stats.steps += 1
            stats.reasoning_tokens += turn.usage.reasoning_tokens
            stats.completion_tokens += turn.usage.completion_tokens
            stats.seconds += turn.duration_s
        return cost

    async def _compact(self, step: int, reason: str) -> bool:
        """Summarise the middle of the conversation with one non-think call; False when there is nothing to cut."""

        async def summarise(middle: list[dict]) -> str:
            limit = int(self.context.config.window_tokens * 0.5 * self.context.estimate.chars_per_token)
            messages = [dumps({"role": "system", "content": SUMMARY_SYSTEM}),
                        dumps({"role": "user", "content": transcript(middle, limit)})]
            turn = await self._complete(step, self.model.request_body(messages, tools_json=None, mode=ThinkMode.none))
            self._account(turn)
            return turn.content

        record = await self.context.compact(self.conversation, summarise)
        if record is None:
            return False
        self.emit(ContextCompacted(step=step, reason=reason, removed_messages=record.removed_messages,
                                   tokens_before=record.tokens_before, tokens_after=record.tokens_after,
                                   summary=record.summary))
        return True

    async def _run_tools(self, step: int, calls: list[ToolCall]) -> list[ToolOutcome]:
        """Run the turn's calls concurrently; results keep the order of the calls."""
        outcomes: list[ToolOutcome | None] = [None] * len(calls)

        async def run_one(index: int, call: ToolCall) -> None:
            self.emit(ToolCallStarted(step=step, call_id=call.id, tool=call.name, arguments=call.arguments))
            started = time.perf_counter()
            outcome = await self._call_tool(step, call)
            text, saved = self.context.observation(outcome.text, call.name)
            outcomes[index] = outcome = replace(outcome, text=text)
            self.emit(ToolResult(step=step, call_id=call.id, tool=call.name, is_error=outcome.is_error,
                                 content=text, duration_s=round(time.perf_counter() - started, 6),
                                 saved_output=str(saved) if saved else None))

        if len(calls) == 1:
            await run_one(0, calls[0])
        else:
            try:
                async with anyio.create_task_group() as group:
                    for index, call in enumerate(calls):
                        group.start_soon(run_one, index, call)
            except* Stop as stopped:  # a hook's StopRun in one of the calls ends the run, unwrapped
                raise stopped.exceptions[0] from None
        return [o for o in outcomes if o is not None]

    def _observe(self, calls: list[ToolCall], outcomes: list[ToolOutcome]) -> None:
        images: list[dict] = []
        for call, outcome in zip(calls, outcomes, strict=True):
            self.conversation.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})
            if self.model.profile.vision:
                images += [{"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
                           for mime, data in outcome.images]
        if images:
            # Tool messages carry text only; images go in one user message right after them.
            self.conversation.append({"role": "user", "content": [{"type": "text", "text": "Images returned by the tools above:"}, *images]})
        if edits := self.context.edits():
            # Packed files changed: the snapshot stays as it was; the diffs are appended instead.
            self.conversation.append({"role": "user", "content": edits})
        summaries = []
        counts = self._state.call_counts
        for call, outcome in zip(calls, outcomes, strict=True):
            info = self.hub.info(call.name)
            summaries.append(ToolOutcomeSummary(tool=call.name, arguments=call.arguments, is_error=outcome.is_error,
                                                read_only=bool(info and info.read_only)))
            key = call_key(call.name, call.arguments)
            counts[key] = counts.get(key, 0) + 1
        self._state.last_tools = summaries
        self._state.consecutive_errors = self._state.consecutive_errors + 1 if any(o.is_error for o in outcomes) else 0


def _response_event(step: int, turn: AssistantTurn, cost: float) -> ModelResponse:
    return ModelResponse(
        step=step, model=turn.model, content=turn.content, reasoning=turn.reasoning,
        tool_calls=[ToolCallInfo(id=c.id, name=c.name, arguments=c.arguments) for c in turn.tool_calls],
        finish_reason=turn.finish_reason, usage=turn.usage, cost=cost, duration_s=round(turn.duration_s, 6),
    )


def _claim_summary(call: ToolCall) -> str | None:
    try:
        args = json.loads(call.arguments or "{}")
    except ValueError:
        return None
    summary = args.get("summary") if isinstance(args, dict) else None
    return summary if isinstance(summary, str) and summary else None
