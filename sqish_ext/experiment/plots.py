"""The run's figure: each activation's paired difference to ReLU, per seed and as a mean with its interval."""

from pathlib import Path

from sqish_ext.experiment.report import LEVEL, metric_label


def plot_differences(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # the object API needs no backend: this works headless

    analysis = results["analysis"]
    metrics = analysis["metrics"]
    twin_of, twin = analysis["null_control"]["pair"]
    null = analysis["null_control"]["paired"]
    rows = [(name, p) for name, p in analysis["paired"].items()] + [(f"null control:\n{twin} − {twin_of}", null)]
    fig = Figure(figsize=(2.6 * len(metrics) + 1.6, 0.42 * len(rows) + 2.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        ax.axvspan(100 * null[metric]["low"], 100 * null[metric]["high"], color="0.9", label="null control's interval")
        ax.axvline(0, color="0.5", linewidth=0.8)
        for i, (name, p) in enumerate(rows):
            color = "0.35" if p is null else "C0"
            d = p[metric]
            ax.scatter([100 * x for x in d["differences"]], [i] * len(d["differences"]), marker="x", s=14, color=color,
                       alpha=0.6, label="one seed" if i == 0 else None)
            mean = 100 * d["mean"]
            ax.errorbar(mean, i, xerr=[[mean - 100 * d["low"]], [100 * d["high"] - mean]], fmt="o", color=color,
                        capsize=3, label=f"mean, {LEVEL:.0%} t-interval" if i == 0 else None)
        ax.set_title(metric_label(metric))
        ax.set_xlabel("Δ accuracy (points)")
    axes[0].set_yticks(range(len(rows)), [name for name, _ in rows])
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="small")
    fig.suptitle(
        f"Accuracy minus ReLU's on the same seed, {results['config']['dataset']}, {results['config']['seeds']} seeds"
    )
    fig.savefig(path, dpi=110)
