"""How long `asyncgen generate` takes, as a whole process, beside the interpreter's start-up.

    python bench/generation.py            # examples (5 runs each) + 10/100/1,000 channels
    python bench/generation.py --quick    # 3 runs, 10/100 channels
    python bench/generation.py --huge     # also 5,000 channels (several minutes)
    python bench/generation.py --profile [mqtt|nats|N]   # cProfile of one in-process run
    python bench/generation.py --peer     # also the official AsyncAPI generator (npm)

Every case runs as its own process (`python -m asyncgen ...`), its wall time taken around
spawn-to-exit and its peak RSS from os.wait4's rusage. The cases of one round run one after
the other and the rounds are repeated, so that a noisy machine slows all cases alike and
the ratios to `python -c pass` hold. Cold runs get a fresh empty `$ASYNCGEN_CACHE_DIR`.
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
    """Temporary folders of one benchmark run, removed at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="asyncgen-bench-gen-"))
        self._count = 0

    def fresh(self, kind: str) -> Path:
        self._count += 1
        return self.root / f"{kind}-{self._count}"

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
                shutil.rmtree(output, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
        if case == "warm":
            output = self.work.fresh("out")
            try:
                return generate(self.spec, output, self.warm_cache)
            finally:
                shutil.rmtree(output, ignore_errors=True)
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


def bench_peer(runs: int, work: Workspace, install: bool) -> str:
    """asyncgen against the official AsyncAPI generator (python-paho-template), cold,
    on AsyncAPI 2.6 documents: a synthetic one and streetlights-mqtt when ../shared/specs
    has it."""
    peer = peer_command(install)
    if isinstance(peer, str):
        return f"official AsyncAPI generator (peer): {peer}"
    label, command = peer
    specs: dict[str, Path] = {}
    streetlights = REPO.parent / "shared" / "specs" / "2.6.0" / "streetlights-mqtt.yml"
    if streetlights.is_file():
        specs["streetlights-mqtt (2.6)"] = streetlights
    for channels in (10, 100):
        path = work.fresh("peer-spec").with_suffix(".yaml")
        path.write_text(synthetic_spec_v2(channels), encoding="utf-8")
        specs[f"synthetic {channels} channels (2.6)"] = path
    results: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for spec in specs.values():  # untimed: npm's and Python's first-run caches
        run_measured(command(spec, work.fresh("peer-out")), env=BASE_ENV, timeout=600)
        generate(spec, work.fresh("out"), work.fresh("cache"))
    for _ in range(runs):
        for name, spec in specs.items():
            output, cache = work.fresh("out"), work.fresh("cache-cold")
            results[(name, "asyncgen")].append(generate(spec, output, cache))
            peer_out = work.fresh("peer-out")
            results[(name, "peer")].append(
                run_measured(command(spec, peer_out), env=BASE_ENV, timeout=600)
            )
            for folder in (output, cache, peer_out):
                shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for name in specs:
        ours, theirs = fmt_run(results[(name, "asyncgen")]), fmt_run(results[(name, "peer")])
        ratio = (
            f"{float(theirs[0]) / float(ours[0]):.1f}x"
            if "FAILED" not in (ours[0], theirs[0])
            else "-"
        )
        rows.append([name, ours[0], ours[2], theirs[0], theirs[2], ratio])
    return table(
        ["spec", "asyncgen s", "RSS MiB", "official s", "RSS MiB", "official / asyncgen"],
        rows,
        title=f"first generation, cold: asyncgen against the official generator ({label}); "
        f"median of {runs}",
    )


def bench_synthetic(sizes: list[int], work: Workspace, runs_small: int) -> str:
    baseline = median(
        [run_measured([PYTHON, "-c", "pass"], env=BASE_ENV).seconds for _ in range(3)]
    )
    rows = []
    for channels in sizes:
        spec = work.fresh(f"spec{channels}").with_suffix(".yaml")
        spec.write_text(synthetic_spec(channels))
        cases = SpecCases(spec, work)
        repeat = runs_small if channels <= 100 else 1
        measured: dict[str, list[Run]] = defaultdict(list)
        # The preparation is a cold generation into an empty folder: the first cold sample.
        measured["cold"].append(cases.prepare())
        for index in range(repeat):
            for case in CASES:
                if case == "cold" and index == repeat - 1:
                    continue
                measured[case].append(cases.run(case))
        figures = {case: fmt_run(measured[case]) for case in CASES}
        cold = figures["cold"][0]
        per_channel = f"{float(cold) / channels * 1000:.2f}" if cold != "FAILED" else "-"
        warm = figures["warm"][0]
        warm_per = f"{float(warm) / channels * 1000:.2f}" if warm != "FAILED" else "-"
        rows.append(
            [
                f"{channels:,}",
                f"{spec.stat().st_size / 1024:.0f}",
                repeat,
                cold,
                figures["cold"][3],
                per_channel,
                warm,
                warm_per,
                figures["regenerate"][0],
                figures["check"][0],
                figures["cold"][2],
            ]
        )
        print(f"  ... {channels} channels done", file=sys.stderr, flush=True)
    return table(
        [
            "channels",
            "spec KiB",
            "runs",
            "cold s",
            "cold CPU s",
            "cold ms/ch",
            "warm s",
            "warm ms/ch",
            "regen s",
            "check s",
            "cold peak RSS MiB",
        ],
        rows,
        title=(
            "synthetic specs: AsyncAPI 3.0, one parameter, receive operation and object "
            f"payload per channel (median; python -c pass = {baseline:.3f} s)"
        ),
    )


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
    parser.add_argument("--quick", action="store_true", help="3 runs; 10 and 100 channels")
    parser.add_argument("--runs", type=int, help="runs per example case (default 5, quick 3)")
    parser.add_argument("--huge", action="store_true", help="also 5,000 channels (slow)")
    parser.add_argument("--no-synthetic", action="store_true", help="only the examples")
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
        help="also time the official AsyncAPI generator (installs it with npm if needed)",
    )
    args = parser.parse_args()

    if args.profile:
        print(profile(args.profile, args.top))
        return
    runs = args.runs or (3 if args.quick else 5)
    sizes = [10, 100] if args.quick else [10, 100, 1000]
    if args.huge:
        sizes.append(5000)
    print(run_header("bytecode cached"))
    started = time.perf_counter()
    work = Workspace()
    BASE_ENV["PYTHONPYCACHEPREFIX"] = str(work.root / "pycache")
    try:
        print()
        print(bench_examples(runs, work), flush=True)
        print()
        print(bench_peer(runs, work, install=args.peer), flush=True)
        if not args.no_synthetic:
            print()
            print(bench_synthetic(sizes, work, runs_small=3 if not args.quick else 1))
    finally:
        work.close()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
