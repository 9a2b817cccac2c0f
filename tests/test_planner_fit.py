"""`curate plan fit`: the fitter on synthetic data with known answers, then real runs of the whole
planner on pools built from the shared WARC + WikiText: the YAML plan step's `fit:` option (Ray
tasks), a target no pool trains on, a 20-token pool merged into its sibling, estimators compared
on held-out mixtures, swarm export/import, plan provenance, and the report in Chromium."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from curate.planner import demo_pools, experiment
from curate.planner import fit as F
from curate.planner.cli import plan_app
from curate.planner.plan import NO_FIT_WARNING, plan_command
from curate.planner.pools import Pool, PoolsFile, load_pools, save_pools
from curate.planner.prepare import prepare
from curate.planner.proxy import train_run
from curate.planner.target import TargetSpec

WIKI_TARGET = {"sources": {"wikitext-2": 1.0}}


def _synthetic_obs(q, rs, base, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    E, A, B, al, be = base
    obs = []
    D = 2.0**20
    for N in (1e5, 3e5, 1e6):
        for i in range(len(q)):
            for ep in (1, 2, 4, 8, 16):
                if ep > 1 and N != 3e5:
                    continue
                x = np.zeros(len(q)); x[i] = D
                U = np.ones(len(q)); U[i] = D / ep
                d = F._deff(x[None], U[None], np.asarray(q), np.asarray(rs))[0]
                L = E + A / N**al + B / d**be
                obs.append(F.Observation(N, x, U, L * math.exp(rng.normal(0, noise)) if noise else L))
    return obs


def test_fit_recovers_known_quality_and_repetition_constants():
    q, rs = [1.0, 0.6, 0.3], [5.0, 15.0, 2.0]
    obs = _synthetic_obs(q, rs, (1.5, 30.0, 200.0, 0.3, 0.35))
    res = F.fit_law(obs, ["a", "b", "c"], n_boot=0, starts=F._grid(3)[::2])  # 4 of the 32 starts
    assert np.allclose(res.quality, q, rtol=0.03), res.quality
    assert np.allclose(res.rstar, rs, rtol=0.05), res.rstar
    assert np.max(np.abs(np.log(res.predict(obs)) - np.log([o.loss for o in obs]))) < 1e-3
    assert res.at_bound == []


def test_parameter_at_a_bound_is_flagged_with_a_profile_interval():
    # Pool c's repeats are worth nothing (true R* = 0.005, below the box's floor 0.05): the fit lands on the
    # bound, says so, and its interval is a one-sided profile interval starting there, not a
    # bootstrap stuck at the bound.
    obs = _synthetic_obs([1.0, 0.6, 0.3], [5.0, 15.0, 0.005], (1.5, 30.0, 200.0, 0.3, 0.35), noise=0.002)
    res = F.fit_law(obs, ["a", "b", "c"], n_boot=0, starts=F._grid(3)[::2])
    flags = {f["param"]: f for f in res.at_bound}
    assert "rstar:c" in flags and flags["rstar:c"]["bound"] == "lower"
    lo, hi = flags["rstar:c"]["profile_ci95"]
    assert lo == pytest.approx(0.05, rel=1e-3) and 0.05 < hi < 1000
    assert res.intervals()["rstar:c"] == (lo, hi) and res.interval_method("rstar:c") == "profile"
    row = next(p for p in res.to_dict()["pools"] if p["name"] == "c")
    assert row["rstar_at_bound"] == "lower" and row["rstar_ci_method"] == "profile"


def test_parameter_at_upper_bound_is_planned_at_the_conservative_end():
    # Pool c never loses value to repetition in these runs (true R* far above the box's 1000): the
    # fit puts R*_c on the upper bound. The data only say "at least so much", so the law a plan
    # uses takes the lower end of its profile interval (repeated tokens lose value sooner).
    obs = _synthetic_obs([1.0, 0.6, 0.3], [5.0, 15.0, 1e6], (1.5, 30.0, 200.0, 0.3, 0.35), noise=0.002)
    res = F.fit_law(obs, ["a", "b", "c"], n_boot=0, starts=F._grid(3)[::2])
    flags = {f["param"]: f for f in res.at_bound}
    assert flags["rstar:c"]["bound"] == "upper", res.at_bound
    lo, hi = flags["rstar:c"]["profile_ci95"]
    assert 5.0 < lo < hi == pytest.approx(1000.0)
    law = res.law(np.array([1e6, 1e6, 1e6]))
    assert law.rstar[2] == pytest.approx(lo) and res.rstar[2] == pytest.approx(1000.0)
    assert law.rstar[:2] == pytest.approx(res.rstar[:2]) and law.quality == pytest.approx(res.quality)
    v, why = F.planning_value(1000.0, [lo, hi], "upper")
    assert v == lo and why.startswith("fit at upper bound; planned at conservative end of interval")
    assert F.planning_value(0.05, [0.05, 3.0], "lower") == (0.05, None)  # already the conservative end


def test_bootstrap_intervals_contain_their_estimates_on_the_demo_fit():
    """The 34 training runs of `make demo`'s quick fit on the sample's pools (recorded proxy
    losses, tests/planner_quick_runs.json): each resample is warm-started from the estimate,
    so every raw percentile interval holds its estimate (from grid starts alone a resample often
    stopped in a worse basin: q 1.06, interval [1.11, 117])."""
    d = json.loads((Path(__file__).parent / "planner_quick_runs.json").read_text())
    names = d["names"]
    obs = [F.Observation(r["N"], np.array(r["tokens"], float), np.array(r["unique"], float), r["loss"], r["name"])
           for r in d["runs"]]
    res = F.fit_law(obs, names, ref=d["ref"], n_boot=experiment.QUICK_DESIGN.n_boot, seed=0)
    est, bound = res.estimates(), {f["param"] for f in res.at_bound}
    assert len(res.bootstrap["E"]) == experiment.QUICK_DESIGN.n_boot
    for label, samples in res.bootstrap.items():
        if label in bound or label == f"q:{d['ref']}":
            continue
        lo, hi = np.percentile(samples, [2.5, 97.5])
        assert lo <= est[label] <= hi, (label, est[label], lo, hi)
        assert res.interval_method(label) == "bootstrap"
    for label, (lo, hi) in res.intervals().items():
        assert lo <= est[label] * (1 + 1e-9) and est[label] <= hi * (1 + 1e-9), (label, est[label], lo, hi)


def test_gradient_is_analytic_and_right():
    from scipy import optimize

    obs = _synthetic_obs([1.0, 0.5], [4.0, 12.0], (1.5, 30.0, 200.0, 0.3, 0.35), noise=0.01)
    arr = F._arrays(obs)
    th = np.array([0.3, 2.0, 4.0, 0.3, 0.3, -0.4, 1.0, 2.0])
    _, g = F._value_and_grad(th, arr, 0)
    num = optimize.approx_fprime(th, lambda t: F._value_and_grad(t, arr, 0)[0], 1e-7)
    assert np.allclose(g, num, atol=1e-6 * max(1.0, np.abs(num).max()))


# ----------------------------------------------------------------------------- real pools
@pytest.fixture(scope="module")
def demo(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("planner_fit")
    # unique_tokens here are whitespace words: the CI pools only need a consistent count
    pj = demo_pools.build_demo_pools(shared_data, root / "pools", lambda t: sum(len(x.split()) for x in t), warcs=1)
    return root, pj


@pytest.fixture(scope="module")
def ci_fit(demo, ray_session):
    """The YAML plan step with `fit: ci`: proxy runs as Ray tasks on the pools it is given."""
    from curate.jobs import PlanJob

    root, pj = demo
    job = PlanJob(PlanJob.Params(budget_flops=1e12, fit="ci", target=WIKI_TARGET))
    stats = job.run(pj.parent, root / "plan_step", seed=0)
    fit = experiment.load_fit(root / "plan_step" / "fit" / "fit.json")
    return root, pj, fit, stats


def test_prepare_holds_out_target_documents_and_drops_external_overlap(demo, tmp_path):
    _, pj = demo
    pf = load_pools(pj)
    d = experiment.CI_DESIGN
    kw = dict(vocab_cap=d.vocab, target_tokens=d.target_tokens, min_pool_tokens=d.min_pool_tokens,
              max_chars_per_pool=d.max_chars_per_pool, tokenizer_chars=d.tokenizer_chars, seed=0, log=print)
    full = prepare(pf, TargetSpec(sources={"web-warc": 1.0}), **kw)
    held = prepare(pf, TargetSpec(**WIKI_TARGET), **kw)
    assert set(held.target.streams) == {"wiki"} and held.target.tokens() > 0
    assert set(full.target.streams) == {"web_high", "web_low"}
    # the target's documents leave its pools' training streams, and only theirs
    assert len(held.streams["wiki"].train) < len(full.streams["wiki"].train)
    assert len(full.streams["web_low"].train) < len(held.streams["web_low"].train)
    # an external target (JSONL) that repeats 3 wiki documents: those leave training, counted
    wiki_docs = pq.read_table(pf.pools[0].path).column("text").to_pylist()
    tj = tmp_path / "target.jsonl"
    tj.write_text("".join(json.dumps({"text": t}) + "\n" for t in wiki_docs[:3]))
    ext = prepare(pf, TargetSpec(path=str(tj)), **kw)
    assert ext.excluded_docs == 3 and set(ext.target.streams) == {"target"}
    assert ext.resolved.kind == "path"


def test_default_target_is_the_reference_source_not_the_candidates(demo):
    _, pj = demo
    pf = load_pools(pj)
    pf.pools[0].score, pf.pools[1].score, pf.pools[2].score = 0.9, 0.3, 0.1  # as the pools stage writes them
    r = TargetSpec().resolve(pf)
    assert r.kind == "sources" and set(r.pool_weights) == {"wiki"} and "reference source" in r.description


def test_yaml_fit_option_runs_estimators_on_heldout_mixtures(ci_fit):
    root, pj, fit, stats = ci_fit
    assert stats["counters"]["proxy_runs"] == fit["n_runs"] > 0
    held = [r for r in fit["runs"] if r["spec"]["kind"] == "holdout"]
    assert len(held) >= 8
    trained = {(json.dumps(r["spec"]["weights"], sort_keys=True), json.dumps(r["spec"]["unique"], sort_keys=True))
               for r in fit["runs"] if r["spec"]["kind"] != "holdout"}
    for r in held:  # really held out: mixtures of >= 2 pools no training run used
        assert sum(w > 0 for w in r["spec"]["weights"].values()) >= 2
        assert (json.dumps(r["spec"]["weights"], sort_keys=True), json.dumps(r["spec"]["unique"], sort_keys=True)) not in trained
    ests = fit["estimators"]
    assert set(ests) == {"law", "regmix", "dml"}
    for e in ests.values():
        assert e["error"] is None and e["n_heldout"] == len(held)
        assert e["mae"] == pytest.approx(np.mean(np.abs(np.array(e["predicted"]) - np.array(e["measured"]))))
    best = max(ests.values(), key=lambda e: (e["spearman"], -e["mae"]))
    assert fit["chosen_estimator"] == best["name"]
    print("estimators:", {k: (round(v["spearman"], 3), round(v["mae"], 4)) for k, v in ests.items()})
    assert ests["law"]["mae"] < 0.1  # nats, on mixtures no fit saw
    assert fit["target"]["pool_weights"] == {"wiki": 1.0}
    assert fit["device"] == "cpu" and "below the ~15M" in fit["scale_note"]
    q = {p["name"]: p for p in fit["fit"]["pools"]}
    for p in q.values():
        if p["name"] != fit["fit"]["ref_pool"]:
            lo, hi = p["quality_ci95"]
            assert 0 < lo <= hi
    # the plan beside it used that fit and says where every number came from
    plan = json.loads((root / "plan_step" / "plan.json").read_text())
    assert plan["estimator"]["name"] == fit["chosen_estimator"]
    fitted = {p["name"]: p for p in fit["fit"]["pools"]}
    for r in plan["pools"]:
        fp = fitted[r["fit_group"]]
        for key in ("quality", "rstar"):
            # at a bound (above its interval's lower end): planned at that conservative end, and says so
            at = bool(fp[f"{key}_at_bound"]) and fp[f"{key}_ci95"][0] < fp[key]
            assert r[f"{key}_source"] == ("fit at bound; planned at conservative end of interval" if at else "fit")
            if at:
                assert r[key] == pytest.approx(r[f"{key}_ci95"][0]) and r[f"{key}_fitted"] >= r[key]
    assert plan["fit"]["target"].startswith("held-out documents of source(s) wikitext-2")
    assert NO_FIT_WARNING not in plan["warnings"]


def test_plan_uses_the_conservative_end_for_an_r_star_at_its_upper_bound(ci_fit, tmp_path):
    # The real CI fit, with wiki's R* moved onto the box's upper bound (as the demo's quick fit
    # left three R*): the plan must not read "R* = 1000, repeat freely" into it.
    root, pj, fit, _ = ci_fit
    fit = json.loads(json.dumps(fit))
    row = next(p for p in fit["fit"]["pools"] if p["name"] == "wiki")
    row.update(rstar=1000.0, rstar_ci95=[2.5, 1000.0], rstar_ci_method="profile", rstar_at_bound="upper")
    fit["fit"]["at_bound"] = [{"param": "rstar:wiki", "bound": "upper", "value": 1000.0, "limit": 1000.0,
                               "profile_ci95": [2.5, 1000.0]}]
    fj = tmp_path / "fit.json"
    fj.write_text(json.dumps(fit))
    plan = plan_command(pj, tmp_path / "plan", budget_flops=1e12, fit=fj, estimator="law")
    wiki = next(p for p in plan["pools"] if p["name"] == "wiki")
    assert wiki["rstar"] == 2.5 and wiki["rstar_fitted"] == 1000.0
    assert wiki["rstar_source"] == "fit at bound; planned at conservative end of interval"
    assert wiki["rstar_planning_note"].startswith("fit at upper bound")
    assert any("rstar:wiki" in w and "planned at the conservative end of that interval (2.5)" in w for w in plan["warnings"])
    on_disk = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert next(p for p in on_disk["pools"] if p["name"] == "wiki")["rstar"] == 2.5
    html = (tmp_path / "plan" / "report.html").read_text()
    assert "fit at bound; planned at conservative end of interval" in html and "planned at" in html


def test_proxy_runs_are_deterministic(demo, ci_fit):
    _, pj, fit, _ = ci_fit
    d = experiment.CI_DESIGN
    prep = prepare(load_pools(pj), TargetSpec(**WIKI_TARGET), vocab_cap=d.vocab, target_tokens=d.target_tokens,
                   min_pool_tokens=d.min_pool_tokens, max_chars_per_pool=d.max_chars_per_pool,
                   tokenizer_chars=d.tokenizer_chars, seed=0)
    names = [g.name for g in prep.groups]
    specs = experiment.design_runs(names, {g.name: g.train_tokens for g in prep.groups}, d)
    again = train_run(specs[0], prep.streams, prep.vocab, prep.target, d.train)
    assert again.val_loss == fit["runs"][0]["val_loss"]  # a Ray task and this process agree bit for bit


def test_swarm_round_trip_gives_the_same_fit(ci_fit, tmp_path):
    from curate.planner.swarm import export_swarm, import_swarm

    _, _, fit, _ = ci_fit
    export_swarm(fit, tmp_path / "swarm")
    assert (tmp_path / "swarm" / "ratios.csv").read_text().splitlines()[0] == "run," + ",".join(g["name"] for g in fit["groups"])
    rep = experiment.fit_imported(tmp_path / "swarm", experiment.CI_DESIGN, ref=fit["fit"]["ref_pool"], log=print)
    again = rep.to_dict()
    assert again["fit"]["base"] == fit["fit"]["base"]
    assert [p["quality"] for p in again["fit"]["pools"]] == [p["quality"] for p in fit["fit"]["pools"]]
    assert [p["rstar"] for p in again["fit"]["pools"]] == [p["rstar"] for p in fit["fit"]["pools"]]
    for k in ("law", "regmix", "dml"):
        assert again["estimators"][k]["predicted"] == pytest.approx(fit["estimators"][k]["predicted"], rel=1e-12, abs=1e-12)
    assert again["chosen_estimator"] == fit["chosen_estimator"]
    names, runs = import_swarm(tmp_path / "swarm")
    assert len(runs) == fit["n_runs"]


def test_swarm_import_of_regmix_runs(shared_data, tmp_path):
    """RegMix's own 512 runs in the ratios/metrics layout: no runs.csv, so a seeded quarter is held out."""
    src = shared_data / "planner" / "regmix"
    (tmp_path / "s").mkdir()
    shutil.copy(src / "train_mixture_1m.csv", tmp_path / "s" / "ratios.csv")
    shutil.copy(src / "train_pile_loss_1m.csv", tmp_path / "s" / "metrics.csv")
    rep = experiment.fit_imported(tmp_path / "s", experiment.CI_DESIGN, target="metric/the_pile_pile_cc_val_loss", log=print)
    assert rep.scores["law"].error and rep.scores["regmix"].n_heldout == 128
    assert rep.scores["regmix"].spearman > 0.9
    assert rep.chosen in ("regmix", "dml")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(plan_app, name="plan")
    return root


def test_cli_fit_merges_a_20_token_pool_and_plans_with_provenance(demo, app, tmp_path):
    _, pj = demo
    pf = load_pools(pj)
    tiny = tmp_path / "web_tiny.parquet"
    pq.write_table(pa.table({"text": ["A short page of exactly twenty tokens, give or take a few words here."]}), tiny)
    lone = tmp_path / "lone.parquet"
    pq.write_table(pa.table({"text": ["Another tiny pool from a source nobody else shares."]}), lone)
    pools = [p.model_copy(update={"path": str(Path(p.path).resolve())}) for p in pf.pools]
    pools.insert(2, Pool(name="web_mid", source="web-warc", domain="web", quality_bucket="mid", documents=1, characters=70,
                         unique_tokens=20, path=str(tiny)))
    pools.append(Pool(name="lone", source="elsewhere", domain="misc", quality_bucket="all", documents=1, characters=51,
                      unique_tokens=12, path=str(lone)))
    pj2 = tmp_path / "pools.json"
    save_pools(PoolsFile(tokenizer="words", pools=pools), pj2)
    r = CliRunner().invoke(app, ["plan", "fit", "--pools", str(pj2), "--out", str(tmp_path / "fit"), "--design", "ci",
                                 "--target-source", "wikitext-2", "--executor", "serial", "--bootstrap", "2"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "pool 'web_mid' (" in r.output and "merged into sibling 'web_high'" in r.output
    assert "pool 'lone'" in r.output and "planned with a prior" in r.output
    assert "estimators on held-out mixtures" in r.output
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert {g["name"]: g["members"] for g in fit["groups"]}["web_high"] == ["web_high", "web_mid"]
    assert (tmp_path / "fit" / "swarm" / "metrics.csv").is_file()
    r = CliRunner().invoke(app, ["plan", "--pools", str(pj2), "--budget-flops", "1e12", "--fit", str(tmp_path / "fit" / "fit.json"),
                                 "--out", str(tmp_path / "plan")])
    assert r.exit_code == 0, r.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    src = {p["name"]: (p["quality_source"], p["rstar_source"]) for p in plan["pools"]}
    assert src["web_mid"] == ("fit, merged into web_high",) * 2
    assert src["lone"] == ("prior (lowest fitted q: not measured)", "prior (median fitted R*: not measured)")
    assert src["wiki"] == ("fit", "fit")
    lone = next(p for p in plan["pools"] if p["name"] == "lone")  # the conservative prior: the lowest measured q
    assert lone["quality"] == pytest.approx(min(p["quality"] for p in plan["pools"] if p["name"] != "lone"), rel=1e-12)
    assert any("merged into" in w for w in plan["warnings"]) and any("planned with a prior" in w for w in plan["warnings"])


def test_plan_without_fit_warns_on_terminal_in_plan_and_report(demo, app, tmp_path):
    _, pj = demo
    r = CliRunner().invoke(app, ["plan", "--pools", str(pj), "--budget-flops", "1e12", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "token shares" in r.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["warnings"] == [NO_FIT_WARNING] and plan["estimator"]["name"] == "none"
    assert {p["quality_source"] for p in plan["pools"]} == {"default (q = 1)"}
    html = (tmp_path / "report.html").read_text()
    assert html.index("Read this first") < html.index("<h2>Pools</h2>") and "token shares" in html


def _render(html: Path, png: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium); report rendering not checked")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
                    "--window-size=1200,7000", html.as_uri()], check=True, capture_output=True, timeout=120)


def test_plan_from_fit_and_report_renders(ci_fit):
    root, pj, fit, _ = ci_fit
    total_unique = sum(p.unique_tokens for p in load_pools(pj).pools)
    C = 6 * 2e5 * total_unique * 4  # enough compute to want ~4 epochs of the data at N = 2e5
    fj = root / "plan_step" / "fit" / "fit.json"
    for base in ("fitted", "chinchilla"):
        plan = plan_command(pj, root / f"plan_{base}", budget_flops=C, base=base, fit=fj, estimator="law")
        w = np.array([p["weight"] for p in plan["pools"]])
        assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
        assert plan["solver"]["abs_loss_difference"] < 1e-6
        assert plan["model"]["flops"] == pytest.approx(C, rel=1e-9)
        on_disk = json.loads((root / f"plan_{base}" / "plan.json").read_text())
        assert on_disk["schema"] == "curate.plan/v1" and "_objects" not in on_disk
        assert on_disk["estimator"]["name"] == "law" and set(on_disk["estimator"]["heldout"]) == {"law", "regmix", "dml"}
    html = root / "plan_fitted" / "report.html"
    text = html.read_text()
    for section in ("Read this first", "Where the numbers come from", "Estimator comparison", "Fitted pool quality",
                    "Budgets where pools enter or leave", "<h2>Frontier</h2>", "quality_source"):
        assert section in text, section
    assert text.count("data:image/png;base64,") >= 7
    png = root / "report.png"
    _render(html, png)
    from PIL import Image

    im = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert im.shape[0] > 3000
    assert (im < 200).mean() > 0.02  # a drawn page, not a blank or error page
    # the images are drawn, not broken-image boxes: every figure's rows hold dark pixels
    print(f"report screenshot: {png}")
