"""Plots of a combined benchmark report: throughput per system and configuration, latency percentiles, and
nidan's latency and throughput against the number of users.

matplotlib never goes into nidan's venv: ``render`` (importable with nidan's venv) runs this file with the python
of ``bench/.work/plot-venv``, which ``ensure_plot_venv`` creates from the system's python3 on first use. By hand:
``bench/.work/plot-venv/bin/python bench/plots.py REPORT.json OUT_DIR``. Writes ``throughput.png``,
``latency.png`` and, when the report has nidan runs at several user counts, ``users.png``; prints each path.

Runs with a wrong answer, a socket error or exhausted codes (``errors`` > 0 or ``failures``) are not data points:
they are left out, and the figure's footnote names them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib exists only in the plot venv
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BENCH = Path(__file__).resolve().parent
WRITTEN = "wrote "

SYSTEM_ORDER = ["privacyidea", "nidan", "totp-minimal", "starlette-bare"]
DISPLAY = {"privacyidea": "privacyIDEA", "nidan": "nidan"}
#: Not 2FA servers: what Python does here (see bench/ceilings.py); drawn hatched.
CEILINGS = {"totp-minimal", "starlette-bare"}
BACKEND_ORDER = ["sqlite", "postgresql", "none"]
SCENARIO_LABELS = {"valid": "valid codes", "wrong": "wrong codes"}
SCENARIO_COLOURS = {"valid": "#4c72b0", "wrong": "#dd8452"}
PERCENTILES = ["p50", "p90", "p99"]
PERCENTILE_COLOURS = {"p50": "#55a868", "p90": "#c4ad3a", "p99": "#c44e52"}
#: Bars spanning more than this factor get a log axis: privacyIDEA and the bare ceiling differ by ~500x.
LOG_SPREAD = 100


# --- running it from nidan's venv ------------------------------------------------------------------------------


def system_python() -> str:
    """The distribution's python3 (not a venv's, not nidan's), else whatever python3 is on PATH."""
    found = shutil.which("python3", path=os.defpath) or shutil.which("python3")
    if found is None:
        raise RuntimeError("no python3 to create the plot venv with")
    return found


def _imports_matplotlib(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(  # noqa: S603 - the plot venv's own python
        [str(python), "-c", "import matplotlib"], capture_output=True, check=False, timeout=120
    )
    return probe.returncode == 0


def ensure_plot_venv(bench_dir: Path) -> Path:
    """``bench_dir/.work/plot-venv`` with matplotlib (created from the system's python3, or matplotlib installed
    into it, when needed); returns its python."""
    venv = bench_dir / ".work" / "plot-venv"
    python = venv / "bin" / "python"
    if _imports_matplotlib(python):
        return python
    if not python.exists():
        subprocess.run([system_python(), "-m", "venv", str(venv)], check=True, timeout=300)  # noqa: S603
    subprocess.run(  # noqa: S603 - pip of our own venv
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "matplotlib"],
        check=True,
        timeout=900,
    )
    return python


def render(report_json: Path, out_dir: Path) -> list[Path]:
    """The PNGs for ``report_json`` in ``out_dir`` (drawn by the plot venv); returns the files written."""
    python = ensure_plot_venv(BENCH)
    done = subprocess.run(  # noqa: S603 - this file, run by the plot venv
        [str(python), str(Path(__file__).resolve()), str(report_json), str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"plots.py exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return [Path(line.removeprefix(WRITTEN)) for line in done.stdout.splitlines() if line.startswith(WRITTEN)]


# --- choosing what to draw (no matplotlib) ----------------------------------------------------------------------


def usable(run: dict[str, Any]) -> bool:
    return not run.get("errors") and not run.get("failures")


def label(run: dict[str, Any]) -> str:
    """``nidan sqlite 1w``, ``privacyIDEA sqlite 2w``; a ceiling is named alone (one uvicorn worker)."""
    system = run["system"]
    if system in CEILINGS:
        return str(system)
    return f"{DISPLAY.get(system, system)} {run['backend']} {run['workers']}w"


def order(run: dict[str, Any]) -> tuple[int, int, int, str]:
    system, backend = run["system"], run["backend"]
    rank = SYSTEM_ORDER.index(system) if system in SYSTEM_ORDER else len(SYSTEM_ORDER)
    backend_rank = BACKEND_ORDER.index(backend) if backend in BACKEND_ORDER else len(BACKEND_ORDER)
    return rank, backend_rank, int(run["workers"]), label(run)


def main_users(runs: list[dict[str, Any]]) -> int | None:
    """The user count most 2FA-server runs have: the matrix's size (ceilings pad theirs; 1 k / 1 M are extra)."""
    counts = Counter(r["users"] for r in runs if r["system"] not in CEILINGS and "users" in r)
    return counts.most_common(1)[0][0] if counts else None


def pick(runs: list[dict[str, Any]], scenario: str) -> dict[str, dict[str, Any]]:
    """One usable run per configuration for ``scenario`` (the matrix's user count preferred), in plot order."""
    size = main_users(runs)
    chosen: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.get("scenario") != scenario or not usable(run):
            continue
        key = label(run)
        if key not in chosen or (chosen[key].get("users") != size and run.get("users") == size):
            chosen[key] = run
    return dict(sorted(chosen.items(), key=lambda item: order(item[1])))


def left_out(runs: list[dict[str, Any]], scenarios: set[str]) -> list[str]:
    return [f"{label(r)} {r['scenario']}" for r in runs if r.get("scenario") in scenarios and not usable(r)]


#: How the matrix marks the 1 k vs 1 M runs (matrix.USER_COUNT_LABEL): only they are alike but for the user count.
USER_COUNT_LABEL = "user-count"


def users_series(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """nidan's usable user-count runs per configuration, by user count, where there are at least two counts (the
    matrix's main runs send other traffic for longer, so they are left out)."""
    series: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for run in runs:
        if run["system"] == "nidan" and run.get("label") == USER_COUNT_LABEL and usable(run) and "users" in run:
            series.setdefault(label(run), {}).setdefault(int(run["users"]), []).append(run)
    return {k: [median_run(v[n]) for n in sorted(v)] for k, v in series.items() if len(v) >= 2}


def median_run(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a size's rounds, the one with the median p99 (of an odd count, the one the target takes; of an even
    count, the lower middle)."""
    ordered = sorted(rounds, key=lambda r: float(r["latency_ms"]["p99"]))
    return ordered[(len(ordered) - 1) // 2]


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def users_text(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return f"{count:,}"


def heading(report: dict[str, Any], what: str) -> str:
    machine = report.get("machine", {})
    date = str(report.get("started_at", ""))[:10]
    return f"{what}\n{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores — {date}"


# --- drawing (matplotlib, in the plot venv) ---------------------------------------------------------------------


def scale(ax: Axes, values: list[float], *, force_log: bool = False) -> None:
    """Log when asked or when the bars span more than LOG_SPREAD; headroom above the tallest for its label."""
    positive = [v for v in values if v > 0]
    if not positive:
        return
    if force_log or max(positive) / min(positive) > LOG_SPREAD:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2, max(positive) * 4)
    else:
        ax.set_ylim(0, max(positive) * 1.25)


def bars(
    ax: Axes, x: list[float], values: list[float], *, width: float, colour: str, hatches: list[str], rotate: bool
) -> None:
    """Bars with their value written on top."""
    container = ax.bar(x, values, width=width, color=colour, hatch=hatches, edgecolor="white", linewidth=0.5)
    ax.bar_label(container, labels=[number(v) for v in values], padding=2, fontsize=7, rotation=90 if rotate else 0)


def footnote(ax: Axes, lines: list[str]) -> None:
    # As the x label, so matplotlib places it below the rotated tick labels instead of over them.
    if lines:
        ax.set_xlabel("\n".join(lines), fontsize=7, color="#555555", loc="left")


def config_axis(ax: Axes, labels: list[str]) -> None:
    ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_axisbelow(True)


def legend(ax: Axes, handles: list[Any], names: list[str], *, ceilings: bool) -> None:
    """The series, plus what the hatching means when a ceiling is drawn."""
    from matplotlib.patches import Patch

    if ceilings:
        handles = [*handles, Patch(facecolor="#bbbbbb", hatch="//", edgecolor="white")]
        names = [*names, "ceiling (not a 2FA server)"]
    ax.legend(handles, names, fontsize=8, loc="upper left")


def throughput(report: dict[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    runs = report.get("runs", [])
    picked = {s: pick(runs, s) for s in SCENARIO_LABELS}
    configs = sorted({k: r for p in picked.values() for k, r in p.items()}.items(), key=lambda i: order(i[1]))
    if not configs:
        return None
    labels = [k for k, _ in configs]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.8))
    width = 0.8 / len(SCENARIO_LABELS)
    handles, names = [], []
    for i, scenario in enumerate(SCENARIO_LABELS):
        present = [(j, picked[scenario][k]) for j, k in enumerate(labels) if k in picked[scenario]]
        if not present:
            continue
        x = [j + (i - (len(SCENARIO_LABELS) - 1) / 2) * width for j, _ in present]
        hatches = ["//" if r["system"] in CEILINGS else "" for _, r in present]
        values = [float(r["rps"]) for _, r in present]
        bars(ax, x, values, width=width, colour=SCENARIO_COLOURS[scenario], hatches=hatches, rotate=len(labels) > 5)
        handles.append(ax.containers[-1])
        names.append(f"verify, {SCENARIO_LABELS[scenario]}")
    scale(ax, [float(r["rps"]) for p in picked.values() for r in p.values()])
    config_axis(ax, labels)
    ax.set_ylabel("requests per second (more is better)")
    ax.set_title(heading(report, "Verify API throughput"), fontsize=10)
    legend(ax, handles, names, ceilings=any(r["system"] in CEILINGS for _, r in configs))
    size = main_users(runs)
    notes = [f"{users_text(size)} users; wrk on the same machine" if size else "wrk on the same machine"]
    if omitted := left_out(runs, set(SCENARIO_LABELS)):
        notes.append("left out (errors): " + ", ".join(omitted))
    footnote(ax, notes)
    return save(fig, out_dir / "throughput.png")


def latency(report: dict[str, Any], out_dir: Path) -> Path | None:
    import matplotlib.pyplot as plt

    runs = report.get("runs", [])
    picked = pick(runs, "valid")
    if not picked:
        return None
    labels = list(picked)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 4.8))
    width = 0.8 / len(PERCENTILES)
    for i, name in enumerate(PERCENTILES):
        x = [j + (i - 1) * width for j in range(len(labels))]
        values = [float(r["latency_ms"][name]) for r in picked.values()]
        hatches = ["//" if r["system"] in CEILINGS else "" for r in picked.values()]
        bars(ax, x, values, width=width, colour=PERCENTILE_COLOURS[name], hatches=hatches, rotate=True)
    scale(ax, [float(r["latency_ms"][p]) for r in picked.values() for p in PERCENTILES], force_log=True)
    config_axis(ax, labels)
    ax.set_ylabel("latency, ms (less is better)")
    ax.set_title(heading(report, "Verify API latency, valid codes"), fontsize=10)
    legend(ax, list(ax.containers), PERCENTILES, ceilings=any(r["system"] in CEILINGS for r in picked.values()))
    notes = ["latency from request sent to response read, as wrk sees it"]
    if omitted := left_out(runs, {"valid"}):
        notes.append("left out (errors): " + ", ".join(omitted))
    footnote(ax, notes)
    return save(fig, out_dir / "latency.png")


def users(report: dict[str, Any], out_dir: Path) -> Path | None:
    """nidan at each user count it was run with (1 k vs 1 M): latency percentiles left, req/s right."""
    import matplotlib.pyplot as plt

    series = users_series(report.get("runs", []))
    if not series:
        return None
    groups = [(f"{config}\n{users_text(int(r['users']))} users", r) for config, rs in series.items() for r in rs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(groups) + 3), 4.6))
    width = 0.8 / len(PERCENTILES)
    for i, name in enumerate(PERCENTILES):
        x = [j + (i - 1) * width for j in range(len(groups))]
        values = [float(r["latency_ms"][name]) for _, r in groups]
        bars(left, x, values, width=width, colour=PERCENTILE_COLOURS[name], hatches=[""] * len(x), rotate=False)
    scale(left, [float(r["latency_ms"][p]) for _, r in groups for p in PERCENTILES], force_log=True)
    left.legend(PERCENTILES, fontsize=8, loc="upper left")
    left.set_ylabel("latency, ms (less is better)")
    rps = [float(r["rps"]) for _, r in groups]
    bars(right, list(range(len(groups))), rps, width=0.5, colour=SCENARIO_COLOURS["valid"], hatches=[""], rotate=False)
    scale(right, rps)
    right.set_ylabel("requests per second (more is better)")
    for ax in (left, right):
        ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(heading(report, "nidan verify, valid codes, by number of users"), fontsize=10)
    return save(fig, out_dir / "users.png")


def save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: plots.py REPORT.json OUT_DIR (run by bench/.work/plot-venv's python)", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    report = json.loads(Path(argv[0]).read_text())
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for draw in (throughput, latency, users):
        path = draw(report, out_dir)
        if path is not None:
            print(f"{WRITTEN}{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
