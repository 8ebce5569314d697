"""`inet ablations`: the section 6 mechanisms as sweeps against the baseline (inet/ablations.py)."""
from __future__ import annotations

import shlex

import pytest
import torch

from inet.ablations import MECHANISMS, MULTITASK, experiments_of, main, parse, rows, sweeps
from inet.compose import compose
from inet.engine import Engine


def test_every_mechanism_composes_with_every_ablated_experiment_and_builds():
    """Each row's overrides compose with all six experiments and build an engine of each task (a typo or a
    refused combination would otherwise show only hours into a sweep)."""
    for name, overrides in MECHANISMS.items():
        for experiment in experiments_of(name, ("multitask/base", "multitask/cu_inputs", "multitask/training_wheels",
                                                "multitask/pretrained", "reduce/xor", "reduce/and")):
            cfg = compose([f"experiment={experiment}", *overrides])
            if experiment in ("multitask/base", "reduce/xor"):  # the others differ in settings the rows leave alone
                Engine(cfg)


def test_the_dry_run_lists_one_sweep_per_row_and_family(capsys):
    assert main(["--dry-run", "--only", "baseline,use_guard", "--combine", "use_guard,explore_counts",
                 "--seeds", "0,1", "--out", "x"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 2
    combined = [shlex.split(ln) for ln in lines if "x/use_guard+explore_counts/" in ln]
    assert len(combined) == 2 and all({"pu_optim.use_guard=3.0", "cu.exploration=counts", "seed=0,1"} <= set(c)
                                      for c in combined)
    assert any("iterations=30000" in ln and "multitask/base" in ln for ln in lines)  # the small budget


def test_the_full_budget_keeps_each_experiments_own_iterations():
    jobs = sweeps(parse(["--budget", "full", "--only", "baseline"]))
    assert [j for j in jobs if any(a.startswith("iterations=") for a in j)] == []
    assert all("seed=0,1,2,3,4" in j for j in jobs)


def test_experiments_can_be_narrowed():
    jobs = sweeps(parse(["--only", "baseline,guard", "--experiments", "multitask/cu_inputs", "--combine", ""]))
    assert [j[0] for j in jobs] == ["experiment=multitask/cu_inputs"] * 2


def test_by_default_the_best_measured_combination_is_one_more_row():
    assert rows(parse(["--only", "baseline"])) == {
        "baseline": [], "qr_dqn+use_normalise+pu_lr": [
            "cu=qr_dqn", "pu_optim.use_normalise=true", "pu_optim.lr=0.001"]}


def test_a_combination_takes_each_key_once():
    a = parse(["--only", "", "--combine", "curiosity_spread,explore_uncertainty"])
    assert rows(a) == {"curiosity_spread+explore_uncertainty": ["cu=qr_dqn", "curiosity.kind=spread",
                                                                "cu.exploration=uncertainty"]}


def test_an_unknown_mechanism_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as stop:
        parse(["--only", "baseline,curiousity"])
    assert stop.value.code == 2 and "unknown mechanism 'curiousity'; choose from baseline" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["one", "two"])
def test_distractors_add_frozen_pus_that_write_the_answer_node_and_never_change(count):
    """`--distractors one|two` adds each family's configs/distractors/<family>_<count>.yaml: PUs of no use,
    frozen, that write the Environment's answer node and are actions of the CU; a run leaves them unchanged."""
    jobs = sweeps(parse(["--only", "baseline", "--distractors", count, "--combine", ""]))
    assert [[a for a in j if a.startswith("+distractors=")] for j in jobs] == [
        [f"+distractors=multitask_{count}"], [f"+distractors=reduce_{count}"]]
    for experiment, family in (("multitask/cu_inputs", "multitask"), ("reduce/xor", "reduce")):
        cfg = compose([f"experiment={experiment}", f"+distractors={family}_{count}", "iterations=600",
                       "cu.learning_starts=100"])
        useless = [n for n in cfg.pus if n.startswith("useless")]
        assert len(useless) == {"one": 1, "two": 2}[count]
        answer = next(iter(cfg.envs.values())).outputs
        assert all(cfg.pus[n].freeze and cfg.pus[n].outputs == answer for n in useless)
        engine = Engine(cfg)
        before = {n: [p.clone() for p in engine.pus[n].parameters()] for n in useless}
        while engine.iteration < cfg.iterations:
            engine.step()
        assert all(engine.action_counts[engine.action_index[n]] > 0 for n in useless)
        assert all(torch.equal(p, q) for n in useless for p, q in zip(before[n], engine.pus[n].parameters()))


def test_a_mechanism_meaningful_for_some_experiments_runs_only_on_those():
    jobs = sweeps(parse(["--only", "node_actions", "--combine", "node_actions,guard"]))
    assert [j[0] for j in jobs] == ["experiment=multitask/base,multitask/cu_inputs,multitask/pretrained"] * 2
    assert experiments_of("guard", ["reduce/xor"]) == ["reduce/xor"]
    jobs = sweeps(parse(["--only", "shortcut", "--combine", ""]))
    assert [j[0] for j in jobs] == [f"experiment={MULTITASK}"] and "+shortcut=multitask" in jobs[0]
