import torch

import sqish_ext  # noqa: F401


def test_exported_program_matches_eager(model, example):
    exported = torch.export.export(model, (example,))
    torch.testing.assert_close(exported.module()(example), model(example), rtol=0, atol=0)


def test_exported_graph_keeps_sqish_as_one_op(model, example):
    exported = torch.export.export(model, (example,))
    targets = [node.target for node in exported.graph.nodes if node.op == "call_function"]
    sqish_ops = (torch.ops.sqish.sqish.default, torch.ops.sqish.sqish.float)
    assert sum(target in sqish_ops for target in targets) == 1


def test_exported_program_round_trips_through_save_and_load(tmp_path, model, example):
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (example,)), path)
    loaded = torch.export.load(path)
    torch.testing.assert_close(loaded.module()(example), model(example), rtol=0, atol=0)


def test_exported_program_with_dynamic_batch_runs_other_batch_sizes(model, example):
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    other = torch.cat([example, example, example])
    torch.testing.assert_close(exported.module()(other), model(other), rtol=0, atol=0)
