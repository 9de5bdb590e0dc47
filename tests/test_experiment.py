"""The experiment: its statistics, its attacks, its report, and the command end to end in --quick runs."""
import csv
import json

import pytest
import torch


@pytest.fixture(scope="module")
def experiment():
    """sqish_ext.experiment, where its extra (torchvision, scikit-learn, matplotlib, tqdm) is installed."""
    for module in ("torchvision", "sklearn", "matplotlib", "tqdm"):
        pytest.importorskip(module, reason="needs the experiment extra: pip install 'sqish-ext[experiment]'")
    import sqish_ext.experiment
    return sqish_ext.experiment


QUICK = ["--quick", "--activations", "relu,sqish"]


@pytest.fixture
def one_thread():
    """One torch thread, as the command uses on the CPU: more collapse when other processes want the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, experiment):
    """A --quick run in this process; also the torch thread count before and after it."""
    out = tmp_path_factory.mktemp("experiment")
    before = torch.get_num_threads()
    experiment.main([*QUICK, "--workers", "1", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    return {"out": out, "results": results, "threads": (before, torch.get_num_threads())}


def fake_runs(names, seeds, metrics, accuracy):
    """Records as runs.run_all returns them, without training: accuracy(name, seed) gives every metric's value."""
    timing = {"step_ms": 100.0, "hooks_ms": 10.0, "profiler_forward_ms": 2.0, "profiler_backward_ms": 3.0,
              "profiler_ms": 5.0}
    learned = {p: {"mean": 1.0, "min": 0.5, "max": 1.5} for p in ("alpha", "beta", "gamma")}
    return {
        name: [
            {"seed": s, "train_time_s": 1.0, "accuracy": dict.fromkeys(metrics, accuracy(name, s)), "timing": timing,
             **({"learned": learned} if "learnable" in name else {})}
            for s in range(seeds)
        ]
        for name in names
    }


def fake_results(runs, metrics, studies=False):
    from sqish_ext.experiment.report import analyse

    config = {"seeds": len(next(iter(runs.values()))), "dataset": "digits", "width": "0.5", "recipe": {"epochs": 1}}
    machine = {"cpu": "a CPU", "cpu_cores": 2, "load_average_before": [0.5, 0.5, 0.5],
               "load_average_after": [0.5, 0.5, 0.5], "cpu_time_s": 2.0, "device": "cpu", "workers": 1,
               "torch_threads": 1, "python": "3", "torch": "2", "torchvision": "0", "platform": "Linux"}
    return {"command": "python -m sqish_ext.experiment", "config": config, "machine": machine, "wall_time_s": 1.0,
            "runs": runs, "analysis": analyse(runs, metrics, (1.0, 8.0), studies)}


METRICS = ["clean", "fgsm_0.05", "pgd10_0.05"]
NAMES = ["relu", "sqish", "silu", "sqish_silu"]


# ------------------------------------------------------------------------------------------ statistics


def test_t_quantile_matches_the_published_t_table(experiment):
    from sqish_ext.experiment.stats import t_quantile

    for df, expected in [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)]:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.995, 1) == pytest.approx(63.6567, abs=1e-3)


def test_t_interval_of_one_to_five_is_three_plus_minus_1_963(experiment):
    from sqish_ext.experiment.stats import t_interval

    interval = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])  # sd √2.5, so half-width t(0.975, 4)·√2.5/√5
    assert interval.mean == 3.0
    assert (interval.low, interval.high) == pytest.approx((3 - 1.96324, 3 + 1.96324), abs=1e-5)


def test_sign_test_gives_the_exact_binomial_p_value(experiment):
    from sqish_ext.experiment.stats import sign_test

    assert sign_test([1.0] * 5) == 2 / 32
    assert sign_test([1.0] * 8 + [-1.0] * 2) == 2 * (1 + 10 + 45) / 1024
    assert sign_test([1.0, -1.0]) == 1.0


def test_sign_test_drops_zero_differences(experiment):
    from sqish_ext.experiment.stats import sign_test

    assert sign_test([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]) == sign_test([1.0] * 5)
    assert sign_test([0.0, 0.0]) == 1.0


# ------------------------------------------------------------------------------------ model and attacks


def test_model_keeps_a_32x32_image_at_4x4_in_its_last_stage(experiment, one_thread):
    from sqish_ext.experiment.models import ACTIVATIONS, build_model

    model = build_model(ACTIVATIONS["relu"], "0.5", 10, torch.rand(2, 3, 32, 32), seed=0)
    seen = []
    model[1].stage4.register_forward_hook(lambda module, args, out: seen.append(out.shape[-2:]))
    model.eval()(torch.rand(2, 3, 32, 32))
    assert seen == [(4, 4)]


def test_attacks_perturb_the_native_digit_image_within_eps(experiment, one_thread):
    from sqish_ext.experiment import attack, data
    from sqish_ext.experiment.models import ACTIVATIONS, build_model

    d = data.load("digits", seed=0, limit=16)
    model = build_model(ACTIVATIONS["sqish"], "0.5", 10, d.x_train[:2], seed=0).eval()
    assert list(model[0].parameters()) == []  # the grey-to-RGB layer is fixed
    _, grad = attack.input_gradient(model, d.x_test, d.y_test)
    adversarial = [attack.fgsm(d.x_test, grad, 0.05), attack.pgd(model, d.x_test, d.y_test, 0.05, torch.Generator())]
    for adv in adversarial:
        assert adv.shape == d.x_test.shape == (16, 1, 8, 8)
        assert (adv - d.x_test).abs().max() <= 0.05 + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1


def test_crop_and_flip_gives_windows_of_the_padded_image_some_mirrored(experiment):
    import torch.nn.functional as F

    from sqish_ext.experiment.training import crop_and_flip

    images = torch.rand(16, 3, 32, 32)
    out = crop_and_flip(images, torch.Generator().manual_seed(0))
    padded = F.pad(images, (4, 4, 4, 4))
    mirrored = 0
    for image, crop in zip(padded, out):
        windows = [image[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)]
        plain = any(torch.equal(crop, w) for w in windows)
        flipped = any(torch.equal(crop, w.flip(2)) for w in windows)
        assert plain or flipped
        mirrored += flipped and not plain
    assert 0 < mirrored < 16


# ------------------------------------------------------------------------------------------ the report


def test_null_control_whose_interval_contains_zero_is_reported_as_the_noise_floor(experiment):
    from sqish_ext.experiment.report import render

    def accuracy(name, seed):  # the SiLU twins equal on every seed
        return 0.9 + 0.01 * seed * (name == "sqish") + 0.01 * (seed == 1)

    runs = fake_runs(NAMES, 3, METRICS, accuracy)
    results = fake_results(runs, METRICS)
    assert results["analysis"]["null_control"]["excludes_zero"] == []
    report = render(results, "results.png")
    assert "| null control: sqish_silu − silu |" in report
    assert "contains 0 for every metric" in report


def test_null_control_whose_interval_excludes_zero_flags_the_run_as_too_noisy(experiment):
    from sqish_ext.experiment.report import render

    def accuracy(name, seed):  # the SiLU twin always 2 points up
        return 0.9 + 0.02 * (name == "sqish_silu") + 0.001 * seed * (name == "silu")

    runs = fake_runs(NAMES, 3, METRICS, accuracy)
    results = fake_results(runs, METRICS)
    assert results["analysis"]["null_control"]["excludes_zero"] == METRICS
    assert "this run is too noisy" in render(results, "results.png")


def test_paired_difference_is_per_seed_and_its_interval_is_a_t_interval(experiment):
    from sqish_ext.experiment.stats import t_interval

    def accuracy(name, seed):  # Sqish 2 or 3 points above ReLU's seed-dependent accuracy
        return 0.5 + 0.01 * seed + (0.02 + 0.01 * (seed % 2)) * (name == "sqish")

    runs = fake_runs(NAMES, 4, METRICS, accuracy)
    paired = fake_results(runs, METRICS)["analysis"]["paired"]["sqish"]["clean"]
    assert paired["differences"] == pytest.approx([0.02, 0.03, 0.02, 0.03])
    interval = t_interval(paired["differences"])
    assert (paired["low"], paired["high"]) == (interval.low, interval.high)
    assert (paired["up"], paired["down"]) == (4, 0)


def test_studies_add_the_gamma_sweep_and_the_fixed_vs_learnable_tables(experiment):
    from sqish_ext.experiment.cli import parse_args
    from sqish_ext.experiment.report import render
    from sqish_ext.experiment.runs import plan

    cfg, _ = parse_args(["--activations", "relu", "--studies", "--gammas", "1,8"])
    names = list(plan(cfg))
    assert {"sqish", "sqish_gamma=8", "sqish_learnable_scalar", "sqish_learnable"} <= set(names)
    report = render(fake_results(fake_runs(names, 2, METRICS, lambda n, s: 0.5), METRICS, True), "r.png")
    assert "### γ sweep of fixed Sqish" in report and "### Fixed vs learnable Sqish" in report


def test_relu_and_the_null_control_run_whatever_activations_are_chosen(experiment):
    from sqish_ext.experiment.cli import parse_args
    from sqish_ext.experiment.runs import plan

    cfg, _ = parse_args(["--activations", "mish"])
    assert list(plan(cfg)) == ["relu", "mish", "silu", "sqish_silu"]


def test_docs_page_gets_the_report_between_its_markers_and_the_figure(tmp_path, quick_run, experiment):
    from sqish_ext.experiment import docs

    page, image = tmp_path / "experiments.md", tmp_path / "img" / "results.png"
    image.parent.mkdir()
    page.write_text(f"# Experiments\n\nwritten by hand\n\n{docs.BEGIN}\nold numbers\n{docs.END}\n\nmore by hand\n")
    docs.main([str(quick_run["out"]), "--page", str(page), "--image", str(image)])
    text = page.read_text()
    assert "old numbers" not in text
    assert text.startswith("# Experiments\n\nwritten by hand\n") and text.endswith("more by hand\n")
    assert (quick_run["out"] / "report.md").read_text().replace("(results.png)", "(img/results.png)") in text
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ the command, --quick


def test_quick_run_writes_the_paired_table_null_control_and_attack_rows(quick_run):
    report = (quick_run["out"] / "report.md").read_text()
    assert "### Paired difference to ReLU" in report
    for row in ("| sqish ", "| silu ", "| null control: sqish_silu − silu |"):
        assert row in report
    assert "FGSM ε=0.05" in report and "PGD-10 ε=0.05" in report
    assert "### γ sweep" not in report  # the studies only run with --studies


def test_quick_run_attacks_every_model_with_fgsm_at_each_eps_and_pgd(quick_run):
    results = quick_run["results"]
    assert results["analysis"]["metrics"] == ["clean", "fgsm_0.025", "fgsm_0.05", "fgsm_0.1", "pgd10_0.05"]
    for records in results["runs"].values():
        for record in records:
            assert list(record["accuracy"]) == results["analysis"]["metrics"]
            assert all(0 <= a <= 1 for a in record["accuracy"].values())


def test_quick_run_times_the_activations_with_the_profiler_and_the_hooks(quick_run):
    for records in quick_run["results"]["runs"].values():
        for record in records:
            timing = record["timing"]
            parts = timing["profiler_forward_ms"] + timing["profiler_backward_ms"]
            assert 0 < timing["profiler_ms"] == pytest.approx(parts)
            assert 0 < timing["profiler_ms"] < timing["step_ms"] and 0 < timing["hooks_ms"] < timing["step_ms"]


def test_quick_run_writes_a_csv_row_per_run_and_a_png(quick_run):
    with (quick_run["out"] / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    names = ("relu", "sqish", "silu", "sqish_silu")
    assert [(r["name"], r["seed"]) for r in rows] == [(n, s) for n in names for s in "01"]
    assert (quick_run["out"] / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_thread_count_is_restored_afterwards(quick_run):
    before, after = quick_run["threads"]
    assert after == before


def test_results_do_not_depend_on_the_number_of_worker_processes(tmp_path, quick_run, experiment):
    experiment.main(["--quick", "--activations", "relu", "--workers", "2", "--out", str(tmp_path)])
    parallel = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert list(parallel) == ["relu", "silu", "sqish_silu"]
    for name, records in parallel.items():
        assert [r["accuracy"] for r in records] == [r["accuracy"] for r in quick_run["results"]["runs"][name]]


def test_cifar_path_trains_one_short_epoch_on_synthetic_cifar_shaped_data(tmp_path, monkeypatch, experiment):
    from sqish_ext.experiment import data

    def synthetic(name, data_dir, download):
        g = torch.Generator().manual_seed(0)
        return data.Data(torch.rand(48, 3, 32, 32, generator=g), torch.randint(0, 100, (48,), generator=g),
                         torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 100, (16,), generator=g), 100)

    monkeypatch.setattr(data, "read_cifar", synthetic)
    experiment.main(["--quick", "--dataset", "cifar100", "--activations", "relu", "--batch-size", "32",
                     "--workers", "1", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    recipe = results["config"]["recipe"]
    assert (recipe["epochs"], recipe["optimizer"], recipe["augment"]) == (1, "sgd", True)
    assert results["analysis"]["metrics"][1] == f"fgsm_{1 / 255:g}"
    assert set(results["runs"]) == {"relu", "silu", "sqish_silu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_device_cuda_without_a_gpu_stops_with_a_clear_message(capsys, experiment):
    with pytest.raises(SystemExit):
        experiment.main(["--device", "cuda"])
    assert "--device cuda: this torch sees no CUDA device" in capsys.readouterr().err


def test_unknown_activation_is_rejected_before_any_training(capsys, experiment):
    with pytest.raises(SystemExit):
        experiment.main(["--activations", "relu,tanh"])
    assert "unknown activation(s) tanh" in capsys.readouterr().err


def test_fewer_than_two_seeds_are_rejected(capsys, experiment):
    with pytest.raises(SystemExit):
        experiment.main(["--seeds", "1"])
    assert "--seeds must be at least 2" in capsys.readouterr().err
