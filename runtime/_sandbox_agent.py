"""The in-container command runner: JSON-line requests on stdin, JSON-line replies on stdout.

DockerSandbox starts it as the container's main process (`python3 -I -u -c <this file>`), so every command
costs one fork/exec instead of a `docker exec`, and the container exits when the host side's stdin closes.
Standard library only, Python 3.6+; the output capture is shared with the bubblewrap backend.
"""

import codecs
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time

_LINGER_S = 0.05
"""How often an exec checks whether its command exited while something else still holds the pipes."""


def _elide(text, cap):
    # Must match agent.runtime.sandbox.elide exactly: the runner cannot import it inside the container.
    if len(text) <= cap:
        return text
    half = max(cap // 2, 1)
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters elided ...]\n{text[-half:]}"


class OutputCapture:
    """Decodes a byte stream as UTF-8 and keeps its head and tail, so any cap up to `keep` renders exactly.

    `render(cap)` equals `elide(full_text, cap)` without ever holding more than about 3 * `keep` characters.
    """

    def __init__(self, keep):
        self.keep = max(keep, 1)
        self.head = ""
        self.tail = ""
        self.chars = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data, final=False):
        text = self._decoder.decode(data, final)
        if not text:
            return
        self.chars += len(text)
        if len(self.head) < self.keep:
            self.head += text[: self.keep - len(self.head)]
        self.tail += text
        if len(self.tail) > 2 * self.keep:
            self.tail = self.tail[-self.keep :]

    def render(self, cap):
        cap = min(cap, self.keep)
        if self.chars <= len(self.head):
            return _elide(self.head, cap)
        half = max(cap // 2, 1)
        return f"{self.head[:half]}\n[... {self.chars - 2 * half} characters elided ...]\n{self.tail[-half:]}"


# ---------------------------------------------------------------------------------------------------
# Everything below runs inside the container only.

_out_lock = threading.Lock()
# Type comments, not annotations: this file must still run on the Python 3.6 of old images.
_execs = {}  # type: dict[object, _Exec]  # request id -> _Exec
_procs = {}  # type: dict[int, _Spawned]  # pid -> _Spawned
_state_lock = threading.Lock()


def _send(message):
    data = (json.dumps(message) + "\n").encode("utf-8")
    with _out_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _killpg(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _environment(extra):
    env = dict(os.environ)
    env.update(extra or {})
    return env


def _start_failure(request, error, started):
    """A program that cannot be executed fails as it would under a shell: 127 not found, 126 not executable."""
    if not isinstance(error, (FileNotFoundError, PermissionError)):
        return {"id": request["id"], "error": "cannot start {!r}: {}".format(request["argv"][0], error)}
    message = "{}: {}\n".format(request["argv"][0], error.strerror)
    return {
        "id": request["id"],
        "exit_code": 127 if isinstance(error, FileNotFoundError) else 126,
        "stdout": "",
        "stderr": message,
        "stdout_chars": 0,
        "stderr_chars": len(message),
        "timed_out": False,
        "duration_s": time.monotonic() - started,
    }


def _check_cwd(request):
    cwd = request.get("cwd")
    if cwd and not os.path.isdir(cwd):
        raise NotADirectoryError(f"cwd {cwd!r} is not an existing directory")


class _Exec:
    def __init__(self, request):
        self.request = request
        self.proc = None  # type: subprocess.Popen[bytes] | None
        self.killed = False

    def kill(self, grace=0.0):
        """SIGTERM the command's process group, SIGKILL it `grace` seconds later."""
        first = not self.killed
        self.killed = True
        if self.proc is None:
            return
        if grace > 0 and first:
            _killpg(self.proc.pid, signal.SIGTERM)
            timer = threading.Timer(grace, _killpg, (self.proc.pid, signal.SIGKILL))
            timer.daemon = True
            timer.start()
        else:
            _killpg(self.proc.pid, signal.SIGKILL)

    def run(self):
        request = self.request
        started = time.monotonic()
        cap = request.get("cap", 30000)
        stdin_data = request.get("stdin")
        output_file = request.get("output_file")
        sink = err_spool = None
        _check_cwd(request)
        if output_file:
            try:
                sink = open(output_file, "wb")
                err_spool = tempfile.TemporaryFile()
            except OSError as error:
                if sink is not None:
                    sink.close()
                return {
                    "id": request["id"],
                    "error": f"cannot write the full output to {output_file}: {error.strerror or error}",
                }
        try:
            self.proc = subprocess.Popen(
                request["argv"],
                cwd=request.get("cwd"),
                env=_environment(request.get("env")),
                stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            for f in (sink, err_spool):
                if f is not None:
                    f.close()
            return _start_failure(request, error, started)
        grace = request.get("grace", 1.0)
        if self.killed:  # cancelled while starting
            self.kill()
        proc = self.proc
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None  # both are PIPEs, which Popen always opens
        if stdin_data is not None:
            threading.Thread(target=self._feed, args=(stdin_data,), daemon=True).start()

        out, err = OutputCapture(cap), OutputCapture(cap)
        targets = {stdout.fileno(): (out, sink), stderr.fileno(): (err, err_spool)}
        deadline = None if request.get("timeout") is None else started + request["timeout"]
        timed_out = False
        exited_at = None
        with selectors.DefaultSelector() as selector:
            for fd in targets:
                selector.register(fd, selectors.EVENT_READ)
            while targets:
                now = time.monotonic()
                if deadline is not None and now >= deadline and not timed_out and not self.killed:
                    timed_out = True
                    self.kill(grace)
                wait = _LINGER_S
                if deadline is not None and not timed_out:
                    wait = min(wait, max(deadline - now, 0))
                for key, _ in selector.select(wait):
                    data = os.read(key.fd, 65536)
                    capture, copy = targets[key.fd]
                    if data:
                        capture.feed(data)
                        if copy is not None:
                            copy.write(data)
                    else:
                        selector.unregister(key.fd)
                        del targets[key.fd]
                if targets and proc.poll() is not None:
                    # The command ended but something it started still holds the pipes: end them too
                    # (bubblewrap's PID namespace does the same), then stop waiting for stragglers.
                    _killpg(proc.pid, signal.SIGKILL)
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 1.0:
                        break
        for stream in (stdout, stderr):
            stream.close()
        returncode = proc.wait()
        _killpg(proc.pid, signal.SIGKILL)  # leftovers of the command's process group
        out.feed(b"", final=True)
        err.feed(b"", final=True)
        if sink is not None and err_spool is not None:  # opened together above
            err_spool.seek(0)
            while True:
                block = err_spool.read(1 << 20)
                if not block:
                    break
                sink.write(block)
            sink.close()
            err_spool.close()
        return {
            "id": request["id"],
            "exit_code": None if (timed_out or self.killed) else returncode,
            "stdout": out.render(cap),
            "stderr": err.render(cap),
            "stdout_chars": out.chars,
            "stderr_chars": err.chars,
            "timed_out": timed_out,
            "duration_s": time.monotonic() - started,
        }

    def _feed(self, data):
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is None:  # never: _feed starts only after a Popen with stdin=PIPE
            return
        try:
            stdin.write(data.encode("utf-8"))
            stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass


class _Spawned:
    """A background command: output buffered until read, exit pushed to the host as an event."""

    KEEP = 1_000_000

    def __init__(self, request):
        _check_cwd(request)
        self.proc = subprocess.Popen(
            request["argv"],
            cwd=request.get("cwd"),
            env=_environment(request.get("env")),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lock = threading.Lock()
        self.capture = OutputCapture(self.KEEP)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()
        threading.Thread(target=self._wait, daemon=True).start()

    def _pump(self):
        assert self.proc.stdout is not None  # stdout=PIPE, which Popen always opens
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self.lock:
                self.capture.feed(data, final=not data)
            if not data:
                return

    def _wait(self):
        code = self.proc.wait()
        _killpg(self.proc.pid, signal.SIGKILL)
        self.pump.join(2.0)  # report the exit only once its last output can be read
        _send({"event": "exit", "proc": self.proc.pid, "returncode": code})

    def read(self, max_chars):
        with self.lock:
            capture, self.capture = self.capture, OutputCapture(self.KEEP)
        return capture.render(max_chars)

    def write(self, data):
        assert self.proc.stdin is not None  # stdin=PIPE, which Popen always opens
        self.proc.stdin.write(data.encode("utf-8"))
        self.proc.stdin.flush()

    def stop(self, grace):
        if self.proc.poll() is None:
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                _killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()


def _handle(request):
    op = request.get("op")
    reply = {"id": request.get("id")}
    try:
        if op == "exec":
            job = _Exec(request)
            with _state_lock:
                _execs[request["id"]] = job
            try:
                reply = job.run()
            finally:
                with _state_lock:
                    _execs.pop(request["id"], None)
        elif op == "kill":
            with _state_lock:
                target = _execs.get(request["target"])
            if target is not None:
                target.kill(request.get("grace", 0.0))
        elif op == "spawn":
            spawned = _Spawned(request)
            with _state_lock:
                _procs[spawned.proc.pid] = spawned
            reply["pid"] = spawned.proc.pid
        elif op == "read":
            spawned = _procs[request["proc"]]
            returncode = spawned.proc.poll()
            if returncode is not None:
                spawned.pump.join(2.0)  # an exited process's last output belongs to this read
            reply["data"] = spawned.read(request.get("max", 30000))
            reply["returncode"] = returncode
        elif op == "write":
            _procs[request["proc"]].write(request["data"])
        elif op == "stop":
            reply["returncode"] = _procs[request["proc"]].stop(request.get("grace", 2.0))
        elif op == "unlink":
            os.unlink(request["path"])
        elif op == "stat":
            path = request["path"]
            reply["kind"] = "dir" if os.path.isdir(path) else "file" if os.path.lexists(path) else None
        elif op == "mkdirs":
            os.makedirs(request["path"], exist_ok=True)
        else:
            reply["error"] = f"unknown op {op!r}"
    except KeyError as error:
        reply["error"] = f"no such process or field: {error}"
    except NotADirectoryError as error:
        reply["error"] = str(error)
    except OSError as error:
        reply["error"] = f"{type(error).__name__}: {error}"
    except Exception as error:  # a runner bug must not take the container down
        reply["error"] = f"{type(error).__name__}: {error}"
    _send(reply)


def _shutdown():
    with _state_lock:
        jobs = list(_execs.values())
        spawned = list(_procs.values())
    for job in jobs:
        job.kill()
    for item in spawned:
        _killpg(item.proc.pid, signal.SIGKILL)


def main():
    home = os.environ.get("HOME")
    if home:
        try:
            os.makedirs(home, exist_ok=True)
        except OSError:
            pass
    _send({"event": "ready", "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0]})
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            request = json.loads(line.decode("utf-8"))
        except ValueError:
            sys.stderr.write(f"runner: bad request line {line[:200]!r}\n")
            continue
        if request.get("op") in ("exec", "spawn", "stop"):
            threading.Thread(target=_handle, args=(request,), daemon=True).start()
        else:
            _handle(request)
    _shutdown()  # the host side went away: leave nothing running


if __name__ == "__main__":
    main()
