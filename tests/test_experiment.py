"""The experiment script end to end in its --quick configuration."""
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


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, experiment):
    out = tmp_path_factory.mktemp("experiment")
    experiment.main(["--quick", "--gammas", "1,8", "--out", str(out)])
    return out


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_results_csv_has_a_row_per_activation(quick_run, experiment):
    rows = read_csv(quick_run / "results.csv")
    assert [r["name"] for r in rows] == list(experiment.ACTIVATIONS)
    assert all(0 <= float(r["accuracy_mean"]) <= 1 for r in rows)
    assert all(0 < float(r["activation_share_mean"]) < 1 for r in rows)


def test_results_json_holds_config_machine_and_every_run(quick_run, experiment):
    results = json.loads((quick_run / "results.json").read_text())
    assert [r["name"] for r in results["activations"]] == list(experiment.ACTIVATIONS)
    assert results["config"]["epochs"] == 1
    assert results["machine"]["torch_threads"] >= 1
    for name in experiment.ACTIVATIONS:
        (run,) = results["runs"][name]
        assert len(run["fgsm"]) == len(results["config"]["eps"])


def test_gamma_sweep_gap_shrinks_as_gamma_grows(quick_run):
    rows = read_csv(quick_run / "gamma_sweep.csv")
    assert [float(r["gamma"]) for r in rows] == [1.0, 8.0]
    assert float(rows[1]["max_gap"]) < float(rows[0]["max_gap"]) / 4


def test_parameter_study_reports_learned_values_of_learnable_variants_only(quick_run, experiment):
    rows = {r["name"]: r for r in read_csv(quick_run / "parameters.csv")}
    assert list(rows) == list(experiment.PARAMETER_STUDY)
    assert rows["sqish"]["learned_beta_mean"] == ""
    assert float(rows["sqish_learnable"]["learned_beta_mean"]) > 0


def test_plot_is_a_png(quick_run):
    assert (quick_run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_gives_the_same_results(tmp_path, experiment):
    args = ["--quick", "--activations", "sqish_learnable", "--no-studies"]
    experiment.main([*args, "--out", str(tmp_path / "a")])
    experiment.main([*args, "--out", str(tmp_path / "b")])
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["runs"] for d in "ab")
    for key in ("accuracy", "fgsm", "learned"):
        assert a["sqish_learnable"][0][key] == b["sqish_learnable"][0][key]


def test_torch_thread_count_is_restored_afterwards(tmp_path, experiment):
    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    experiment.main(["--quick", "--activations", "relu", "--no-studies", "--threads", str(other), "--out", str(tmp_path)])
    assert torch.get_num_threads() == before


def test_unknown_activation_is_rejected_before_any_training(capsys, experiment):
    with pytest.raises(SystemExit):
        experiment.main(["--activations", "relu,tanh"])
    assert "unknown activation(s) tanh" in capsys.readouterr().err
