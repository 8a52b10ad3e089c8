"""`RunRequests`: what MCP servers ask during a tool call, answered for the run that made the call.

Elicitation goes to the Agent's `elicitation` callback, sampling to the model under its `SamplingPolicy` (usage and
cost added to the run's), progress and log messages become events of the run. Every request and answer is an
event in the run's trace; a declined question or a refused request is also noted in the call's result.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import mcp.types as types

from agent.tools.server_requests import CallOrigin

from .elicitation import ElicitationAnswer, ElicitationRequest, ask
from .events import (
    ElicitationAnswered,
    ElicitationAsked,
    Event,
    SamplingAnswered,
    SamplingAsked,
    ServerLog,
    ServerProgress,
)
from .run import CURRENT_RUN, AgentRun
from .sampling import prompt_text, request_body, result_of

if TYPE_CHECKING:
    from .runner import Agent

logger = logging.getLogger("agent.tools")
_PROMPT_CHARS = 2000
_LEVELS: list[types.LoggingLevel] = ["debug", "info", "notice", "warning", "error", "critical", "alert",
                                  "emergency"]


class RunRequests:
    """The `agent.tools.server_requests.ServerRequests` of one Agent (its hub's): requests are attributed to the
    run whose tool call they came during (`CallOrigin.caller`), else to the Agent's only run in progress."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.log_level: types.LoggingLevel | None = agent.server_log_level

    def answers_elicitation(self, server: str) -> bool:
        return self.agent.elicitation is not None

    def answers_sampling(self, server: str) -> bool:
        return self.agent.sampling.allows(server)

    def caller(self) -> Any:
        return CURRENT_RUN.get()

    # -- attribution

    def _run(self, origin: CallOrigin | None) -> AgentRun | None:
        run = origin.caller if origin is not None else None
        if not isinstance(run, AgentRun):
            runs = self.agent.active_runs()
            run = runs[0] if len(runs) == 1 else None
        return run if run is not None and run.result is None else None

    @staticmethod
    def _unattributed(origin: CallOrigin | None) -> bool:
        """Not from a run's call: a message between calls, or a call made outside runs."""
        return origin is None or not isinstance(origin.caller, AgentRun)

    @staticmethod
    def _step(run: AgentRun | None) -> int | None:
        return run.context.step if run is not None and run.context is not None else None

    def _emit(self, run: AgentRun | None, origin: CallOrigin | None, event: Event) -> None:
        """To the run; a message from no run's call with several runs going goes to each of them (one that came
        after its run ended goes nowhere)."""
        if run is not None:
            run.emit(event)
        elif self._unattributed(origin):
            for target in self.agent.active_runs():
                target.emit(event)

    # -- elicitation

    async def elicit(self, server: str, origin: CallOrigin | None,
                     params: types.ElicitRequestParams) -> types.ElicitResult:
        run = self._run(origin)
        tool, step = origin.tool if origin is not None else None, self._step(run)
        if isinstance(params, types.ElicitRequestURLParams):
            request = ElicitationRequest(server=server, message=params.message, tool=tool, mode="url", url=params.url,
                                         run_id=run.run_id if run else None)
        else:
            request = ElicitationRequest(server=server, message=params.message, schema=dict(params.requested_schema),
                                         tool=tool, run_id=run.run_id if run else None)
        asked = ElicitationAsked(server=server, tool=tool, step=step, mode=request.mode, message=request.message,
                                 fields=request.fields, url=request.url)
        self._emit(run, origin, asked)
        callback = self.agent.elicitation
        if callback is None:  # not declared to servers; one that asks anyway gets a decline
            answer = ElicitationAnswer.decline("nobody to ask: the agent has no elicitation callback", by="nobody")
        else:
            try:
                answer = await ask(callback, request)
            except Exception as exc:
                answer = ElicitationAnswer.cancel(f"the elicitation callback failed ({type(exc).__name__}: {exc})")
        content = answer.content if answer.action == "accept" else None
        self._emit(run, origin, ElicitationAnswered(server=server, tool=tool, step=step, action=answer.action,
                                                    answered_by=answer.by, fields=sorted(content or {}),
                                                    reason=answer.reason or None))
        if answer.action != "accept" and origin is not None:
            verb = "declined" if answer.action == "decline" else "cancelled"
            origin.notes.append(f"[During this call the MCP server {server!r} asked the user: {request.message!r}. "
                                f"The question was {verb}" + (f": {answer.reason}" if answer.reason else "") + ".]")
        return types.ElicitResult(action=answer.action, content=content)

    # -- sampling

    async def sample(self, server: str, origin: CallOrigin | None,
                     params: types.CreateMessageRequestParams) -> types.CreateMessageResult | types.ErrorData:
        run = self._run(origin)
        tool, step = origin.tool if origin is not None else None, self._step(run)
        policy = self.agent.sampling
        prompt = prompt_text(params)
        self._emit(run, origin, SamplingAsked(server=server, tool=tool, step=step, messages=len(params.messages),
                                              max_tokens=params.max_tokens, prompt=_cut(prompt, _PROMPT_CHARS)))
        refusal = None
        if not policy.allows(server):
            refusal = f"the agent's sampling policy does not allow server {server!r} to ask for completions"
        elif run is None or run.context is None:
            refusal = "sampling is answered only during a tool call of a run"
        elif run.sampling_requests >= policy.max_requests_per_run:
            refusal = f"this run's limit of {policy.max_requests_per_run} sampling requests is used up"
        if refusal is not None:
            return self._refuse(run, origin, server, tool, step, refusal, types.INVALID_REQUEST)
        assert run is not None and run.context is not None
        run.sampling_requests += 1
        model = self.agent.sampling_model()
        started = time.perf_counter()
        try:
            turn = await model.complete(request_body(model, policy, params))
        except Exception as exc:
            return self._refuse(run, origin, server, tool, step, f"the model call failed: {exc}", types.INTERNAL_ERROR)
        cost = model.cost(turn.usage)
        totals = run.context.totals
        totals.usage = totals.usage + turn.usage
        totals.cost += cost
        result = result_of(turn, model)
        answered = SamplingAnswered(server=server, tool=tool, step=step, ok=True, model=result.model,
                                    content=turn.content, stop_reason=result.stop_reason, usage=turn.usage,
                                    cost=round(cost, 8), duration_s=round(time.perf_counter() - started, 3))
        self._emit(run, origin, answered)
        return result

    def _refuse(self, run: AgentRun | None, origin: CallOrigin | None, server: str, tool: str | None,
                step: int | None, reason: str, code: int) -> types.ErrorData:
        self._emit(run, origin, SamplingAnswered(server=server, tool=tool, step=step, ok=False, error=reason))
        if origin is not None:
            origin.notes.append(f"[During this call the MCP server {server!r} asked the agent's model for a "
                                f"completion; it was refused: {reason}.]")
        return types.ErrorData(code=code, message=f"Sampling refused: {reason}")

    # -- notifications

    def progress(self, origin: CallOrigin, progress: float, total: float | None, message: str | None) -> None:
        run = self._run(origin)
        self._emit(run, origin, ServerProgress(server=origin.server, tool=origin.tool, step=self._step(run),
                                               progress=progress, total=total, message=message))

    def log(self, server: str, origin: CallOrigin | None, params: types.LoggingMessageNotificationParams) -> None:
        # Handshake-era servers that declare no logging capability send every level: filter here too.
        if self.log_level is None or _LEVELS.index(params.level) < _LEVELS.index(self.log_level):
            return
        run = self._run(origin)
        event = ServerLog(server=server, tool=origin.tool if origin is not None else None, step=self._step(run),
                          level=params.level, logger=params.logger, data=params.data)
        if run is None and not self.agent.active_runs():
            logger.debug("log message from MCP server %r outside runs: %s", server, params.data)
        self._emit(run, origin, event)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
