"""From the runs' records to the analysis (results.json) and from that to tables (report.md, CSV)."""

import csv
import statistics
from pathlib import Path

from sqish_ext.experiment import stats, studies
from sqish_ext.experiment.attack import PGD_STEPS
from sqish_ext.experiment.models import BASELINE, NULL_CONTROL

LEVEL = 0.95


def metric_label(metric: str) -> str:
    if metric == "clean":
        return "clean"
    attack, eps = metric.split("_")
    return f"{'FGSM' if attack == 'fgsm' else f'PGD-{PGD_STEPS}'} ε={eps}"


def paired(first: list[dict], second: list[dict], metric: str) -> dict:
    """second minus first, seed by seed, with the mean's t-interval and the sign test."""
    differences = [b["accuracy"][metric] - a["accuracy"][metric] for a, b in zip(first, second)]
    interval = stats.t_interval(differences, LEVEL)
    return {
        "differences": differences,
        "mean": interval.mean,
        "low": interval.low,
        "high": interval.high,
        "up": sum(d > 0 for d in differences),
        "down": sum(d < 0 for d in differences),
        "sign_p": stats.sign_test(differences),
    }


def _excludes_zero(p: dict) -> bool:
    return not p["low"] <= 0 <= p["high"]


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def analyse(runs: dict[str, list[dict]], metrics: list[str], gammas: tuple[float, ...], studies_ran: bool) -> dict:
    """The numbers the report shows, computed once from the runs."""
    baseline = runs[BASELINE]
    twin_of, twin = NULL_CONTROL
    null = {m: paired(runs[twin_of], runs[twin], m) for m in metrics}
    noisy = [m for m in metrics if _excludes_zero(null[m])]
    timing = {}
    for name, records in runs.items():
        share = lambda key: [r["timing"][key] / r["timing"]["step_ms"] for r in records]  # noqa: E731
        timing[name] = {
            "train_s": _mean_std([r["train_time_s"] for r in records]),
            "step_ms": _mean_std([r["timing"]["step_ms"] for r in records]),
            "profiler_forward_ms": _mean_std([r["timing"]["profiler_forward_ms"] for r in records]),
            "profiler_backward_ms": _mean_std([r["timing"]["profiler_backward_ms"] for r in records]),
            "profiler_share": _mean_std(share("profiler_ms")),
            "hooks_share": _mean_std(share("hooks_ms")),
        }
    analysis = {
        "metrics": metrics,
        "accuracy": {
            name: {m: _mean_std([r["accuracy"][m] for r in records]) for m in metrics} for name, records in runs.items()
        },
        "paired": {
            name: {m: paired(baseline, records, m) for m in metrics}
            for name, records in runs.items()
            if name != BASELINE
        },
        "null_control": {"pair": list(NULL_CONTROL), "paired": null, "excludes_zero": noisy},
        "masking": _masking_check(runs, metrics),
        "timing": timing,
    }
    if studies_ran:
        analysis["gamma_sweep"] = [
            {"gamma": g, "name": studies.gamma_variant(g), "max_gap": studies.max_gap(g)} for g in gammas
        ]
        analysis["learned"] = {
            name: {
                p: {
                    "mean": statistics.fmean(r["learned"][p]["mean"] for r in runs[name]),
                    "min": min(r["learned"][p]["min"] for r in runs[name]),
                    "max": max(r["learned"][p]["max"] for r in runs[name]),
                }
                for p in ("alpha", "beta", "gamma")
            }
            for name in studies.PARAMETER_STUDY
            if "learned" in runs[name][0]
        }
    return analysis


def _masking_check(runs: dict[str, list[dict]], metrics: list[str]) -> dict | None:
    """How many runs PGD left more images correct than FGSM did at the same ε (a sign of gradient masking)."""
    pgd = metrics[-1]
    fgsm = f"fgsm_{pgd.split('_')[1]}"
    if fgsm not in metrics:
        return None
    records = [r for rs in runs.values() for r in rs]
    worse = [r for r in records if r["accuracy"][pgd] > r["accuracy"][fgsm]]
    return {"pgd": pgd, "fgsm": fgsm, "runs": len(records), "pgd_above_fgsm": len(worse)}


# ------------------------------------------------------------------------------------------ markdown


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(c) for c in column) for column in zip(headers, *rows)]
    render = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([render(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(render, rows)])


def _points(value: float) -> str:
    rounded = round(100 * value, 1) + 0.0  # + 0.0 turns a −0.0 into 0.0
    return f"{rounded:+.1f}".replace("-", "−")


def _difference(p: dict) -> str:
    mark = " †" if _excludes_zero(p) else ""
    return f"{_points(p['mean'])} [{_points(p['low'])}, {_points(p['high'])}]{mark}"


def _pm(value: dict, scale: float = 100, digits: int = 1) -> str:
    return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"


def _null_control_sentence(results: dict) -> str:
    null = results["analysis"]["null_control"]
    twin_of, twin = null["pair"]
    if not null["excludes_zero"]:
        return (
            f"**Null control.** `{twin}` − `{twin_of}` (one function built two ways): its {LEVEL:.0%} interval "
            "contains 0 for every metric, as it must. Its spread is the noise floor: a difference to ReLU "
            "within that spread is not evidence of anything."
        )
    labels = ", ".join(metric_label(m) for m in null["excludes_zero"])
    return (
        f"**Null control: this run is too noisy.** `{twin}` − `{twin_of}` are one function built two ways, "
        f"yet the {LEVEL:.0%} interval of their difference excludes 0 for {labels}. Do not rank activations "
        "on those metrics from this run; rerun with more seeds."
    )


def _paired_rows(analysis: dict) -> list[tuple[str, dict]]:
    """(label, paired differences by metric) for every activation against ReLU, then for the null control."""
    twin_of, twin = analysis["null_control"]["pair"]
    return [*analysis["paired"].items(), (f"null control: {twin} − {twin_of}", analysis["null_control"]["paired"])]


def _header(results: dict) -> list[str]:
    cfg, machine = results["config"], results["machine"]
    n, models = cfg["seeds"], len(results["analysis"]["accuracy"])
    return [
        f"`{results['command']}`: the runs took {results['wall_time_s']:.0f} s of wall time and "
        f"{machine['cpu_time_s']:.0f} s of CPU time, on {machine['cpu']} "
        f"({machine['cpu_cores']} cores; 1-minute load average {machine['load_average_before'][0]:.2f} before, "
        f"{machine['load_average_after'][0]:.2f} after), device {machine['device']}, {machine['workers']} worker "
        f"processes of {machine['torch_threads']} torch thread(s) each; Python {machine['python']}, torch "
        f"{machine['torch']}, torchvision {machine['torchvision']}, {machine['platform']}.",
        "",
        f"{cfg['dataset']}, ShuffleNet V2 x{cfg['width']} with the CIFAR stem, {cfg['recipe']['epochs']} epochs, "
        f"seeds 0–{n - 1}: {models} models × {n} seeds = {models * n} trainings.",
    ]


def _paired_section(results: dict, image: str) -> list[str]:
    analysis = results["analysis"]
    metrics = analysis["metrics"]
    rows = [[label, *(_difference(p[m]) for m in metrics)] for label, p in _paired_rows(analysis)]
    return [
        "### Paired difference to ReLU",
        "",
        "Accuracy minus ReLU's on the same seed (same split, initial weights and batch order), in points: mean "
        f"over the {results['config']['seeds']} seeds [{LEVEL:.0%} t-interval]; † marks an interval that excludes 0.",
        "",
        _table(["activation", *map(metric_label, metrics)], rows),
        "",
        _null_control_sentence(results),
        *_sqish_sentence(analysis),
        "",
        f"![Paired differences to ReLU with {LEVEL:.0%} intervals]({image})",
    ]


def _sqish_sentence(analysis: dict) -> list[str]:
    """The paper's comparison in one line, where fixed Sqish ran."""
    if "sqish" not in analysis["paired"]:
        return []
    p = analysis["paired"]["sqish"]
    differences = ", ".join(f"{metric_label(m)} {_difference(p[m])}" for m in analysis["metrics"])
    return ["", f"**Sqish − ReLU** (fixed Sqish at the package's defaults): {differences} points. The paper reports "
                "+5.87 clean and +8.21 under FGSM for ShuffleNet V2 on CIFAR-100."]


def _per_seed_section(analysis: dict) -> list[str]:
    metrics = analysis["metrics"]
    shown = [metrics[0], metrics[len(metrics) // 2]]
    headers, rows = ["activation"], []
    for m in shown:
        headers += [f"{metric_label(m)}, per seed", "up/down, sign test"]
    for label, p in _paired_rows(analysis):
        cells = [label]
        for m in shown:
            sign = f"{p[m]['up']}/{p[m]['down']}, p = {p[m]['sign_p']:.2f}"
            cells += [" ".join(map(_points, p[m]["differences"])), sign]
        rows.append(cells)
    return [
        "### Per seed",
        "",
        f"The differences behind the table, seed 0 first, for {' and '.join(map(metric_label, shown))}; up/down "
        "counts the seeds on either side of 0, p is the exact two-sided sign test.",
        "",
        _table(headers, rows),
    ]


def _accuracy_section(analysis: dict) -> list[str]:
    metrics = analysis["metrics"]
    rows = [[name, *(_pm(accuracy[m]) for m in metrics)] for name, accuracy in analysis["accuracy"].items()]
    lines = ["### Accuracy", "", "Mean ± standard deviation over seeds, %.", "",
             _table(["activation", *map(metric_label, metrics)], rows)]
    masking = analysis["masking"]
    if masking:
        verdict = "no sign of gradient masking" if masking["pgd_above_fgsm"] == 0 else "a sign of gradient masking"
        pgd, fgsm = metric_label(masking["pgd"]), metric_label(masking["fgsm"])
        lines += ["", f"{pgd} left more test images correct than {fgsm} in {masking['pgd_above_fgsm']} of "
                  f"{masking['runs']} runs: {verdict}."]
    return lines


def _time_section(analysis: dict) -> list[str]:
    rows = [
        [
            name,
            _pm(t["train_s"], 1),
            f"{t['step_ms']['mean']:.0f}",
            f"{t['profiler_forward_ms']['mean']:.1f} + {t['profiler_backward_ms']['mean']:.1f}",
            f"{100 * t['profiler_share']['mean']:.1f}",
            f"{100 * t['hooks_share']['mean']:.1f}",
        ]
        for name, t in analysis["timing"].items()
    ]
    headers = ["activation", "train s", "step ms", "activation ops ms (fwd + bwd)", "profiler %", "hooks %"]
    return [
        "### Time",
        "",
        "Training time is the training loop's wall time. Time in the activations is per training step, as a share "
        "of the plain step: by torch.profiler, the activation ops' own time (forward + backward), and by clock "
        "brackets around each activation module, which also count dispatch and autograd overhead. Means over seeds.",
        "",
        _table(headers, rows),
    ]


def _studies_section(analysis: dict) -> list[str]:
    metrics = analysis["metrics"]
    sweep = [
        [f"{g['gamma']:g}", f"{g['max_gap']:.4f}", _pm(analysis["accuracy"][g["name"]]["clean"]),
         *(_difference(analysis["paired"][g["name"]][m]) for m in metrics)]
        for g in analysis["gamma_sweep"]
    ]
    parameters = []
    for name in studies.PARAMETER_STUDY:
        learned = analysis["learned"].get(name)
        cells = [f"{learned[p]['mean']:.3f} [{learned[p]['min']:.2f}, {learned[p]['max']:.2f}]" if learned else "fixed"
                 for p in ("alpha", "beta", "gamma")]
        clean = [_pm(analysis["accuracy"][name]["clean"]), _difference(analysis["paired"][name]["clean"])]
        parameters.append([name, *cells, *clean])
    return [
        "### γ sweep of fixed Sqish",
        "",
        "α and β at their defaults; max gap is the largest |f(x) − max(αx, x)|; Δ is the paired difference to "
        "ReLU.",
        "",
        _table(["γ", "max gap", "clean %", *(f"Δ {metric_label(m)}" for m in metrics)], sweep),
        "",
        "### Fixed vs learnable Sqish",
        "",
        "Learned values: mean over sites and channels [min, max over all seeds].",
        "",
        _table(["variant", "α", "β", "γ", "clean %", "Δ clean"], parameters),
    ]


def render(results: dict, image: str) -> str:
    """The report of one run in markdown: what ran where, then its tables; image is the plot's path."""
    analysis = results["analysis"]
    sections = [_header(results), _paired_section(results, image), _per_seed_section(analysis),
                _accuracy_section(analysis), _time_section(analysis)]
    if "gamma_sweep" in analysis:
        sections.append(_studies_section(analysis))
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def write_csv(path: Path, runs: dict[str, list[dict]], analysis: dict) -> None:
    """One row per run: its accuracies, its difference to ReLU's run of the same seed, and its timing."""
    metrics = analysis["metrics"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "seed", *metrics, *(f"{m}_minus_relu" for m in metrics), "train_time_s",
                         "step_ms", "profiler_ms", "hooks_ms"])
        for name, records in runs.items():
            for r in records:
                base = runs[BASELINE][r["seed"]]["accuracy"]
                writer.writerow([name, r["seed"], *(r["accuracy"][m] for m in metrics),
                                 *(r["accuracy"][m] - base[m] for m in metrics), r["train_time_s"],
                                 *(r["timing"][k] for k in ("step_ms", "profiler_ms", "hooks_ms"))])
