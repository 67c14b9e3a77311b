"""How long `asyncgen generate` takes, as a whole process, beside the interpreter's start-up.

    python bench/generation.py            # the scale table: 1 (MQTT example), 100, 1,000
                                          # and 3,000 channels, medians of 3
    python bench/generation.py --quick    # 1 and 100 channels, one run
    python bench/generation.py --examples # also both examples, every case, 5 runs
    python bench/generation.py --profile [mqtt|nats|N]   # cProfile of one in-process run
    python bench/generation.py --peer     # install the peers when missing (npm, pip)

Every case runs as its own process (`python -m asyncgen ...`), its wall time taken around
spawn-to-exit and its peak RSS from os.wait4's rusage. The cases of one round run one after
the other and the rounds are repeated, so that a noisy machine slows all cases alike and
the ratios to `python -c pass` hold. Cold runs get a fresh empty `$ASYNCGEN_CACHE_DIR`.
The official AsyncAPI generator and asyncapi-python run beside asyncgen in each round
when they are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EXAMPLES, PYTHON, REPO, Run, median, run_header, run_measured, table

ASYNCGEN = [PYTHON, "-m", "asyncgen"]
CASES = ("cold", "warm", "regenerate", "check")
CASE_TEXT = {
    "cold": "first generation, empty folder, cold cache",
    "warm": "first generation, empty folder, warm cache",
    "regenerate": "regenerate, unchanged spec",
    "check": "--check, up to date",
}


# -- synthetic specs -------------------------------------------------------------------


def reading_schemas(channels: int) -> list[str]:
    """`components.schemas` entries Reading0.. of both synthetic specs: a small object."""
    return [
        f"    Reading{i}:\n"
        "      type: object\n"
        "      required: [id, value]\n"
        "      properties:\n"
        "        id:\n"
        "          type: string\n"
        "        value:\n"
        "          type: number\n"
        "        at:\n"
        "          type: string\n"
        "          format: date-time\n"
        for i in range(channels)
    ]


def synthetic_spec(channels: int) -> str:
    """AsyncAPI 3.0 over MQTT: `channels` channels, each with a parameter, a receive
    operation and its own small object payload."""
    out: list[str] = [
        "asyncapi: 3.0.0\n"
        "info:\n"
        f"  title: Synthetic {channels}\n"
        "  version: 1.0.0\n"
        "servers:\n"
        "  local:\n"
        "    host: localhost:1883\n"
        "    protocol: mqtt\n"
        "channels:\n"
    ]
    for i in range(channels):
        out.append(
            f"  ch{i}:\n"
            f"    address: things/{{thingId}}/ch{i}\n"
            "    parameters:\n"
            "      thingId:\n"
            "        description: Id of the thing.\n"
            "    messages:\n"
            f"      m{i}:\n"
            f"        $ref: '#/components/messages/M{i}'\n"
        )
    out.append("operations:\n")
    for i in range(channels):
        out.append(
            f"  receiveCh{i}:\n"
            "    action: receive\n"
            "    channel:\n"
            f"      $ref: '#/channels/ch{i}'\n"
            "    messages:\n"
            f"      - $ref: '#/channels/ch{i}/messages/m{i}'\n"
        )
    out.append("components:\n  messages:\n")
    for i in range(channels):
        out.append(f"    M{i}:\n      payload:\n        $ref: '#/components/schemas/Reading{i}'\n")
    out.append("  schemas:\n")
    out.extend(reading_schemas(channels))
    return "".join(out)


def synthetic_spec_v2(channels: int) -> str:
    """The same channels as `synthetic_spec`, written in AsyncAPI 2.6: the official
    generator's python-paho template reads 2.x documents only."""
    out: list[str] = [
        "asyncapi: 2.6.0\n"
        "info:\n"
        f"  title: Synthetic {channels}\n"
        "  version: 1.0.0\n"
        "servers:\n"
        "  local:\n"
        "    url: localhost:1883\n"
        "    protocol: mqtt\n"
        "channels:\n"
    ]
    for i in range(channels):
        out.append(
            f"  things/{{thingId}}/ch{i}:\n"
            "    parameters:\n"
            "      thingId:\n"
            "        description: Id of the thing.\n"
            "        schema:\n"
            "          type: string\n"
            "    subscribe:\n"
            f"      operationId: receiveCh{i}\n"
            "      message:\n"
            "        payload:\n"
            f"          $ref: '#/components/schemas/Reading{i}'\n"
        )
    out.append("components:\n  schemas:\n")
    out.extend(reading_schemas(channels))
    return "".join(out)


# -- running ---------------------------------------------------------------------------


class Workspace:
    """Temporary folders of one benchmark run, removed at the end.

    Folders done with are only moved aside (`discard`) until then. On ext4 without a
    journal, as on some virtual machines, each new file skips over every inode of its
    group freed in the last seconds to minutes (the kernel's `recently_deleted`, seen with
    `perf`): removing a 1,000-file project right after a run made the next run's file
    creations cost 0.3-1.4 ms each instead of 0.04 ms, a second or more that the tools
    writing few files (the peers) never paid.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="asyncgen-bench-gen-"))
        self._count = 0
        self._discarded = self.root / "discarded"

    def fresh(self, kind: str) -> Path:
        self._count += 1
        return self.root / f"{kind}-{self._count}"

    def discard(self, *folders: Path) -> None:
        """Move `folders` (where they exist) out of the way, to be removed by `close`."""
        self._discarded.mkdir(exist_ok=True)
        for folder in folders:
            with contextlib.suppress(FileNotFoundError):
                folder.rename(self._discarded / folder.name)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


#: The environment of every measured process. Bytecode is cached (in a folder of our own,
#: so the repository stays clean) as in a user's installation, even where the machine sets
#: PYTHONDONTWRITEBYTECODE; the first, untimed run of each kind compiles.
BASE_ENV: dict[str, str] = {
    key: value
    for key, value in os.environ.items()
    if key not in ("ASYNCGEN_NO_CACHE", "ASYNCGEN_CACHE_DIR", "PYTHONDONTWRITEBYTECODE")
}
# The asyncgen of this checkout, whichever one is installed.
BASE_ENV["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "src"), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
)


def env_with_cache(cache: Path) -> dict[str, str]:
    return {**BASE_ENV, "ASYNCGEN_CACHE_DIR": str(cache)}


def generate(spec: Path, output: Path, cache: Path, *extra: str, timeout: float = 900) -> Run:
    return run_measured(
        [*ASYNCGEN, "generate", str(spec), "-o", str(output), *extra],
        env=env_with_cache(cache),
        timeout=timeout,
    )


class SpecCases:
    """The four cases on one spec; `prepare()` does the untimed set-up of warm/regen/check."""

    def __init__(self, spec: Path, work: Workspace) -> None:
        self.spec = spec
        self.work = work
        self.warm_cache = work.fresh("cache-warm")
        self.project = work.fresh("project")

    def prepare(self) -> Run:
        """A cold generation that fills the warm cache and leaves a project to regenerate."""
        result = generate(self.spec, self.project, self.warm_cache)
        if result.returncode != 0:
            detail = subprocess.run(
                [*ASYNCGEN, "generate", str(self.spec), "-o", str(self.work.fresh("why"))],
                env=env_with_cache(self.work.fresh("cache")),
                capture_output=True,
                text=True,
                timeout=900,
            )
            raise SystemExit(
                f"asyncgen generate {self.spec} failed (exit {result.returncode}):\n"
                + detail.stderr[-3000:]
            )
        return result

    def run(self, case: str) -> Run:
        if case == "cold":
            output, cache = self.work.fresh("out"), self.work.fresh("cache-cold")
            try:
                return generate(self.spec, output, cache)
            finally:
                self.work.discard(output, cache)
        if case == "warm":
            output = self.work.fresh("out")
            try:
                return generate(self.spec, output, self.warm_cache)
            finally:
                self.work.discard(output)
        if case == "regenerate":
            return generate(self.spec, self.project, self.warm_cache)
        if case == "check":
            return generate(self.spec, self.project, self.warm_cache, "--check")
        raise ValueError(case)


#: The official AsyncAPI generator and its Python (paho-mqtt) template. The template
#: declares `generator <2.0.0`, so generator 1.x it is.
PEER_PACKAGES = ("@asyncapi/generator@1", "@asyncapi/python-paho-template@0")
PEER_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "asyncgen-bench-peer"


def peer_command(install: bool) -> tuple[str, Callable[[Path, Path], list[str]]] | str:
    """The official generator's command line, or why there is none.

    An `ag` already installed (by npm into PEER_HOME, which `--peer` does when npm is
    there) is used with the template installed beside it.
    """
    ag = PEER_HOME / "node_modules" / ".bin" / "ag"
    template = PEER_HOME / "node_modules" / "@asyncapi" / "python-paho-template"
    if not ag.exists() and install:
        npm = shutil.which("npm")
        if npm is None:
            return "npm is not installed"
        PEER_HOME.mkdir(parents=True, exist_ok=True)
        print(f"installing {' '.join(PEER_PACKAGES)} with npm into {PEER_HOME} ...", flush=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(PEER_HOME), "--no-audit", "--no-fund", *PEER_PACKAGES],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            return f"npm install failed: {done.stderr.strip()[-300:]}"
    if not ag.exists() or not template.is_dir():
        return f"not installed (python bench/generation.py --peer installs it into {PEER_HOME})"
    return f"ag {PEER_PACKAGES[0].split('@')[-1]}.x + python-paho-template", lambda spec, out: [
        str(ag),
        str(spec),
        str(template),
        "-o",
        str(out),
        "--force-write",
    ]


def fmt_run(runs: list[Run]) -> tuple[str, str, str, str]:
    """Median wall s, min wall s, peak RSS MiB, median CPU s (user + system)."""
    ok = [run for run in runs if run.returncode == 0]
    if len(ok) < len(runs):
        codes = sorted({run.returncode for run in runs if run.returncode != 0})
        return "FAILED", f"exit {codes}", "-", "-"
    return (
        f"{median([r.seconds for r in ok]):.3f}",
        f"{min(r.seconds for r in ok):.3f}",
        f"{max(r.max_rss_mib for r in ok):.1f}",
        f"{median([r.cpu_seconds for r in ok]):.3f}",
    )


def bench_examples(runs: int, work: Workspace) -> str:
    specs = {
        "mqtt": EXAMPLES / "mqtt" / "asyncapi.yaml",
        "nats": EXAMPLES / "nats" / "asyncapi.yaml",
    }
    cases = {name: SpecCases(spec, work) for name, spec in specs.items()}
    for spec_cases in cases.values():
        spec_cases.prepare()
    results: dict[tuple[str, str], list[Run]] = defaultdict(list)
    run_measured([PYTHON, "-c", "pass"], env=BASE_ENV)  # untimed: compile
    run_measured([*ASYNCGEN, "--version"], env=BASE_ENV)
    for _ in range(runs):
        # One round: every case once, so that drift of the machine hits all of them.
        results[("-", "python -c pass")].append(run_measured([PYTHON, "-c", "pass"], env=BASE_ENV))
        results[("-", "asyncgen --version")].append(
            run_measured([*ASYNCGEN, "--version"], env=BASE_ENV)
        )
        for name, spec_cases in cases.items():
            for case in CASES:
                results[(name, case)].append(spec_cases.run(case))
    baseline = median([r.seconds for r in results[("-", "python -c pass")]])
    rows = []
    for (name, case), measured in results.items():
        med, fastest, rss, cpu = fmt_run(measured)
        ratio = f"{float(med) / baseline:.1f}x" if med != "FAILED" else "-"
        label = CASE_TEXT.get(case, case)
        rows.append([name, label, med, fastest, ratio, cpu, rss])
    out = [
        table(
            ["spec", "case", "median s", "min s", "x python -c pass", "CPU s", "peak RSS MiB"],
            rows,
            title=f"asyncgen generate as a process (median of {runs} runs, interleaved)",
        )
    ]
    return "\n\n".join(out)


#: asyncapi-python's code generator, in a virtual environment of its own (it pins its own
#: datamodel-code-generator and black); `--peer` creates it with pip.
AAPY_HOME = PEER_HOME / "asyncapi-python-venv"


def aapy_command(install: bool) -> tuple[str, Callable[[Path, Path], list[str]]] | str:
    """asyncapi-python's generator command line, or why there is none."""
    python = AAPY_HOME / "bin" / "python"
    if not python.exists() and install:
        print(f"installing asyncapi-python[codegen] into {AAPY_HOME} ...", flush=True)
        made = subprocess.run([PYTHON, "-m", "venv", str(AAPY_HOME)], capture_output=True)
        done = (
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "asyncapi-python[codegen]"],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if made.returncode == 0
            else None
        )
        if done is None or done.returncode != 0:
            shutil.rmtree(AAPY_HOME, ignore_errors=True)
            return "pip install asyncapi-python[codegen] failed"
    if not python.exists():
        return f"not installed (python bench/generation.py --peer installs it into {AAPY_HOME})"
    script = (
        "import sys; from asyncapi_python_codegen.cli import main; "
        "sys.argv[0] = 'asyncapi-python-codegen'; main()"
    )
    return "asyncapi-python-codegen", lambda spec, out: [
        str(python),
        "-c",
        script,
        str(spec),
        str(out),
    ]


def synthetic_spec_aapy(channels: int) -> str:
    """The channels of `synthetic_spec` as asyncapi-python's generator takes them: it
    wants an AMQP binding on a channel with parameters, each parameter's `location`, the
    payload inline in the channel's message, and operations without `messages`."""
    out: list[str] = [
        f"asyncapi: 3.0.0\ninfo:\n  title: Synthetic {channels}\n  version: 1.0.0\nchannels:\n"
    ]
    # The payload of every channel: a Reading schema, four levels deeper.
    payload = "".join("    " + line for line in reading_schemas(1)[0].splitlines(True)[1:])
    for i in range(channels):
        out.append(
            f"  ch{i}:\n"
            f"    address: things/{{thingId}}/ch{i}\n"
            "    bindings:\n"
            "      amqp:\n"
            "        is: routingKey\n"
            "    parameters:\n"
            "      thingId:\n"
            "        description: Id of the thing.\n"
            "        location: $message.payload#/id\n"
            "    messages:\n"
            f"      m{i}:\n"
            "        payload:\n" + payload
        )
    out.append("operations:\n")
    for i in range(channels):
        out.append(
            f"  receiveCh{i}:\n    action: receive\n    channel:\n      $ref: '#/channels/ch{i}'\n"
        )
    return "".join(out)


def one_channel_changed(spec_text: str, channels: int) -> str:
    """The spec with one more payload property on one channel: the MQTT example's
    telemetry (`channels` 0), else the middle channel's Reading schema."""
    schema = "    TelemetryPayload:\n" if channels == 0 else f"    Reading{channels // 2}:\n"
    head, found, tail = spec_text.partition(schema)
    before, props, after = tail.partition("      properties:\n")
    assert found and props, f"no {schema.strip()} with properties: update one_channel_changed()"
    return head + schema + before + props + "        note:\n          type: string\n" + after


class ChangeCase:
    """A project generated from `spec`, its warm cache, and the same spec with one channel
    changed: each run regenerates a fresh copy of both, so that every run finds the cache
    as the first generation left it."""

    def __init__(self, spec_text: str, changed_text: str, work: Workspace) -> None:
        self.work = work
        self.base = work.fresh("change-base")
        self.base.mkdir(parents=True)
        (self.base / "spec.yaml").write_text(spec_text, encoding="utf-8")
        self.changed = changed_text
        result = generate(self.base / "spec.yaml", self.base / "project", self.base / "cache")
        if result.returncode != 0:
            raise SystemExit("asyncgen generate failed on the spec to change")

    def run(self) -> Run:
        copy = self.work.fresh("change")
        shutil.copytree(self.base, copy, symlinks=True)
        (copy / "spec.yaml").write_text(self.changed, encoding="utf-8")
        try:
            return generate(copy / "spec.yaml", copy / "project", copy / "cache")
        finally:
            self.work.discard(copy)


def _med(runs: list[Run], cpu: bool = False) -> str:
    ok = [run for run in runs if run.returncode == 0]
    if not runs:
        return "-"
    if len(ok) < len(runs):
        return "FAILED"
    return f"{median([r.cpu_seconds if cpu else r.seconds for r in ok]):.2f}"


def _peer_cell(runs: list[Run], once: bool) -> str:
    text = _med(runs)
    if text in ("-", "FAILED"):
        return text
    return f"{text}{' (1 run)' if once else ''}, {_rss(runs)} MiB"


def _rss(runs: list[Run]) -> str:
    ok = [run for run in runs if run.returncode == 0]
    return f"{max(r.max_rss_mib for r in ok):.0f}" if ok and len(ok) == len(runs) else "-"


def bench_scale(sizes: list[int], runs: int, work: Workspace, install: bool, aapy_max: int) -> str:
    """asyncgen cold, warm, after a one-channel change and unchanged, beside the official
    generator and asyncapi-python, at each size; medians of `runs`, one round at a time."""
    peer = peer_command(install)
    aapy = aapy_command(install)
    notes = []
    if isinstance(peer, str):
        notes.append(f"official generator: {peer}")
    if isinstance(aapy, str):
        notes.append(f"asyncapi-python: {aapy}")
    rows = []
    for channels in sizes:
        if channels == 1:
            spec_text = (EXAMPLES / "mqtt" / "asyncapi.yaml").read_text(encoding="utf-8")
            label = "1 (MQTT example)"
            changed = one_channel_changed(spec_text, 0)
            streetlights = REPO.parent / "shared" / "specs" / "2.6.0" / "streetlights-mqtt.yml"
            peer_spec = streetlights if streetlights.is_file() else None
        else:
            spec_text = synthetic_spec(channels)
            label = f"{channels:,}"
            changed = one_channel_changed(spec_text, channels)
            peer_spec = work.fresh("peer-spec").with_suffix(".yaml")
            peer_spec.write_text(synthetic_spec_v2(channels), encoding="utf-8")
        aapy_spec = work.fresh("aapy-spec").with_suffix(".yaml")
        aapy_spec.write_text(synthetic_spec_aapy(channels), encoding="utf-8")
        spec = work.fresh("spec").with_suffix(".yaml")
        spec.write_text(spec_text, encoding="utf-8")
        cases = SpecCases(spec, work)
        cases.prepare()
        change = ChangeCase(spec_text, changed, work)
        measured: dict[str, list[Run]] = defaultdict(list)
        # Each peer once untimed (npm's and Python's first-run caches); a peer slower than
        # PEER_SLOW seconds runs once only, to keep the whole run bounded.
        slow: set[str] = set()
        peers = (("official", peer, peer_spec), ("aapy", aapy, aapy_spec))
        for name, tool, path in peers:
            if isinstance(tool, str) or path is None:
                continue
            if name == "aapy" and channels > aapy_max:
                slow.add(name)
                continue
            first = run_measured(tool[1](path, work.fresh("peer-out")), env=BASE_ENV, timeout=600)
            if first.seconds > PEER_SLOW or first.returncode != 0:
                slow.add(name)
                measured[name].append(first)
        for _ in range(runs):
            measured["cold"].append(cases.run("cold"))
            measured["warm"].append(cases.run("warm"))
            measured["change"].append(change.run())
            measured["unchanged"].append(cases.run("regenerate"))
            for name, tool, path in peers:
                if isinstance(tool, str) or path is None or name in slow:
                    continue
                out = work.fresh("peer-out")
                measured[name].append(run_measured(tool[1](path, out), env=BASE_ENV, timeout=600))
                work.discard(out)
        cold = _med(measured["cold"])
        official = _med(measured["official"])
        ratio = (
            f"{float(official) / float(cold):.1f}x"
            if official not in ("-", "FAILED") and cold != "FAILED"
            else "-"
        )

        rows.append(
            [
                label,
                cold,
                _med(measured["cold"], cpu=True),
                _med(measured["warm"]),
                _med(measured["change"]),
                _med(measured["change"], cpu=True),
                _med(measured["unchanged"]),
                _rss(measured["cold"]),
                _peer_cell(measured["official"], "official" in slow),
                ratio,
                _peer_cell(measured["aapy"], "aapy" in slow),
            ]
        )
        print(f"  ... {label} channels: {rows[-1][1:]}", file=sys.stderr, flush=True)
    ratios = []
    by_size = {row[0]: row for row in rows}
    if (
        "1,000" in by_size
        and "3,000" in by_size
        and "FAILED"
        not in (
            by_size["1,000"][1],
            by_size["3,000"][1],
        )
    ):
        wall = float(by_size["3,000"][1]) / float(by_size["1,000"][1])
        cpu = float(by_size["3,000"][2]) / float(by_size["1,000"][2])
        ratios.append(
            f"3,000 / 1,000 channels, cold: {wall:.2f}x wall, {cpu:.2f}x CPU (target <= 3.3x)"
        )
    return "\n".join(
        [
            table(
                [
                    "channels",
                    "cold s",
                    "cold CPU s",
                    "warm s",
                    "1-channel change s",
                    "change CPU s",
                    "unchanged s",
                    "cold peak RSS MiB",
                    "official generator s, RSS",
                    "official / cold",
                    "asyncapi-python s, RSS",
                ],
                rows,
                title=(
                    f"asyncgen generate at scale (median of {runs}; CPU = user + system of "
                    "the process and its child). Synthetic AsyncAPI 3.0 documents, one "
                    "parameter, receive operation and object payload per channel; the "
                    "official generator (python-paho) reads the same channels in 2.6 "
                    "(streetlights-mqtt for the example row); asyncapi-python reads them "
                    "with the AMQP bindings and inline payloads it requires"
                ),
            ),
            *ratios,
            *notes,
        ]
    )


#: A peer whose first run takes longer than this runs once only.
PEER_SLOW = 30.0


def profile(target: str, top: int) -> str:
    """cProfile of one in-process cold generation (import time included)."""
    work = Workspace()
    try:
        if target in ("mqtt", "nats"):
            spec = EXAMPLES / target / "asyncapi.yaml"
        else:
            spec = work.fresh("spec").with_suffix(".yaml")
            spec.write_text(synthetic_spec(int(target)))
        os.environ["ASYNCGEN_CACHE_DIR"] = str(work.fresh("cache"))
        os.environ.pop("ASYNCGEN_NO_CACHE", None)
        output = work.fresh("out")
        profiler = cProfile.Profile()
        profiler.enable()
        from typer.main import get_command

        from asyncgen.cli import app

        failure = ""
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the list of created files
                get_command(app).main(
                    ["generate", str(spec), "-o", str(output)], standalone_mode=False
                )
        except SystemExit:
            pass
        except Exception as exc:  # profile what ran anyway, and say that it failed
            failure = f"generation FAILED: {type(exc).__name__}: {exc}"
        profiler.disable()
        parts = [failure] if failure else []
        for order in ("cumulative", "tottime"):
            stream = io.StringIO()
            stats = pstats.Stats(profiler, stream=stream)
            stats.strip_dirs().sort_stats(order).print_stats(top)
            text = stream.getvalue()
            body = text[text.find("   ncalls") :] if "   ncalls" in text else text
            head = next((line for line in text.splitlines() if "function calls" in line), "")
            parts.append(f"top {top} by {order} ({target}, cold cache):{head}\n{body.rstrip()}")
        return "\n\n".join(parts)
    finally:
        work.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 100 channels, 1 run")
    parser.add_argument("--runs", type=int, help="runs per case (default 3; examples 5)")
    parser.add_argument(
        "--sizes",
        default="1,100,1000,3000",
        help="channel counts of the scale table, 1 meaning the MQTT example (default "
        "1,100,1000,3000)",
    )
    parser.add_argument("--examples", action="store_true", help="also the examples table")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="mqtt",
        metavar="mqtt|nats|N",
        help="print a cProfile of one in-process generation (an example, or N channels)",
    )
    parser.add_argument("--top", type=int, default=25, help="functions in the profile")
    parser.add_argument(
        "--peer",
        action="store_true",
        help="install the official AsyncAPI generator (npm) and asyncapi-python (pip, in a "
        "virtual environment) when missing; without it they run only when present",
    )
    parser.add_argument(
        "--aapy-max",
        type=int,
        default=1000,
        help="asyncapi-python only up to this many channels (it took 170 s for 1,000)",
    )
    args = parser.parse_args()

    if args.profile:
        print(profile(args.profile, args.top))
        return
    sizes = [1, 100] if args.quick else [int(size) for size in args.sizes.split(",")]
    runs = args.runs or (1 if args.quick else 3)
    print(run_header("bytecode cached"))
    started = time.perf_counter()
    work = Workspace()
    BASE_ENV["PYTHONPYCACHEPREFIX"] = str(work.root / "pycache")
    try:
        run_measured([PYTHON, "-c", "pass"], env=BASE_ENV)  # untimed: compile
        baseline = median(
            [run_measured([PYTHON, "-c", "pass"], env=BASE_ENV).seconds for _ in range(3)]
        )
        print(f"\npython -c pass: {baseline:.3f} s (median of 3)", flush=True)
        if args.examples:
            print()
            print(bench_examples(args.runs or 5, work), flush=True)
        print()
        print(bench_scale(sizes, runs, work, args.peer, args.aapy_max), flush=True)
    finally:
        work.close()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
