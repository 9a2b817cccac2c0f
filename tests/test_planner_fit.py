"""`curate plan fit`: the fitter on synthetic data with known answers, then a tiny real run of the
whole pipeline (pools from the shared WARC + WikiText, proxy LMs, fit, plan, report in Chromium)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from curate.planner import demo_pools, experiment
from curate.planner import fit as F
from curate.planner.plan import plan_command
from curate.planner.pools import load_pools
from curate.planner.proxy import train_run


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
    res = F.fit_law(obs, ["a", "b", "c"], n_boot=0, starts=F._grid(3)[::4])  # 8 of the 32 starts
    assert np.allclose(res.quality, q, rtol=0.03), res.quality
    assert np.allclose(res.rstar, rs, rtol=0.05), res.rstar
    assert np.max(np.abs(np.log(res.predict(obs)) - np.log([o.loss for o in obs]))) < 1e-3


def test_gradient_is_analytic_and_right():
    from scipy import optimize

    obs = _synthetic_obs([1.0, 0.5], [4.0, 12.0], (1.5, 30.0, 200.0, 0.3, 0.35), noise=0.01)
    arr = F._arrays(obs)
    th = np.array([0.3, 2.0, 4.0, 0.3, 0.3, -0.4, 1.0, 2.0])
    _, g = F._value_and_grad(th, arr, 0)
    num = optimize.approx_fprime(th, lambda t: F._value_and_grad(t, arr, 0)[0], 1e-7)
    assert np.allclose(g, num, atol=1e-6 * max(1.0, np.abs(num).max()))


@pytest.fixture(scope="module")
def ci_fit(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("planner_fit")
    # unique_tokens here are whitespace words: the CI pools only need a consistent count
    pj = demo_pools.build_demo_pools(shared_data, root / "pools", lambda t: sum(len(x.split()) for x in t), warcs=1)
    pf = load_pools(pj)
    rep = experiment.fit_pools(pf, experiment.CI_DESIGN, log=print)
    experiment.save_fit(rep, root / "fit.json")
    return root, pj, pf, rep


def test_demo_pools_layout(ci_fit):
    _, pj, pf, _ = ci_fit
    assert [p.name for p in pf.pools] == ["wiki", "web_high", "web_low"]
    import pyarrow.parquet as pq

    for p in pf.pools:
        t = pq.read_table(p.path)
        assert t.column_names == ["text"] and t.num_rows == p.documents > 0
    wiki = pq.read_table(pf.pools[0].path).column("text").to_pylist()
    assert not any(" @-@ " in d or "<unk>" in d for d in wiki)  # de-tokenised
    raw = json.loads(pj.read_text())
    assert raw["version"] == 1 and set(raw["pools"][0]) >= {"name", "source", "domain", "quality_bucket", "documents",
                                                            "characters", "unique_tokens", "path"}


def test_proxy_runs_are_deterministic(ci_fit):
    _, _, pf, rep = ci_fit
    first = rep.runs[0]
    _, pools = experiment.prepare_tokens(pf, experiment.CI_DESIGN)
    again = train_run(first.spec, pools, experiment.CI_DESIGN.vocab, rep.val_mix, experiment.CI_DESIGN.train)
    assert again.val_loss == first.val_loss


def test_repetition_and_fewer_tokens_cost_loss(ci_fit):
    rep = ci_fit[3]
    by = {r.spec.name: r.val_loss for r in rep.runs}
    d = experiment.CI_DESIGN
    for p in ("wiki", "web_high", "web_low"):
        one = by[f"{p}/d{d.base_size}/1ep"]
        assert by[f"{p}/d{d.base_size}/4ep"] > one  # 4 epochs of a quarter of the data is worse
        assert by[f"{p}/d{d.base_size}/1ep/D{int(d.tokens * d.small_tokens_frac)}"] > one


def test_fit_describes_the_runs_and_predicts_held_out(ci_fit):
    rep = ci_fit[3]
    fit_cfgs = {(r.spec.shape, r.spec.tokens, tuple(sorted(r.spec.weights.items())), tuple(sorted(r.spec.unique.items())))
                for r in rep.runs if r.spec.kind != "holdout"}
    for r in rep.runs:
        if r.spec.kind == "holdout":  # really held out: a mixture of pools, never a fit configuration
            assert sum(w > 0 for w in r.spec.weights.values()) >= 2
            assert (r.spec.shape, r.spec.tokens, tuple(sorted(r.spec.weights.items())),
                    tuple(sorted(r.spec.unique.items()))) not in fit_cfgs
    names = [p for p in ("wiki", "web_high", "web_low")]
    fit_obs = [experiment.observation(r, names) for r in rep.runs if r.spec.kind != "holdout"]
    resid = np.log(rep.fit.predict(fit_obs)) - np.log([o.loss for o in fit_obs])
    print(f"CI fit: {len(rep.runs)} runs in {rep.seconds:.1f}s, RMS log residual {np.sqrt(np.mean(resid**2)):.4f}, "
          f"held-out MAE {rep.validation.mae:.4f}, q {np.round(rep.fit.quality, 3)}, R* {np.round(rep.fit.rstar, 2)}")
    assert np.sqrt(np.mean(resid**2)) < 0.01
    assert rep.validation.mae < 0.08  # nats, on mixtures no fit saw
    # the Gopher-like split is visible to the proxies: a low-bucket token is worth less
    q = dict(zip(names, rep.fit.quality))
    assert q["web_low"] < q["web_high"]
    iv = rep.fit.intervals()
    for p in names[1:]:
        lo, hi = iv[f"q:{p}"]
        assert lo <= hi and lo > 0


def _render(html: Path, png: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("headless Chromium not installed (apt-get install -y chromium); report rendering not checked")
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
                    "--window-size=1200,4200", html.as_uri()], check=True, capture_output=True, timeout=120)


def test_plan_from_fit_and_report_renders(ci_fit):
    root, pj, _, rep = ci_fit
    total_unique = sum(p.unique_tokens for p in load_pools(pj).pools)
    C = 6 * 2e5 * total_unique * 4  # enough compute to want ~4 epochs of the data at N = 2e5
    for base in ("fitted", "chinchilla"):
        plan = plan_command(pj, root / f"plan_{base}", budget_flops=C, base=base, fit=root / "fit.json")
        w = np.array([p["weight"] for p in plan["pools"]])
        assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
        assert plan["solver"]["abs_loss_difference"] < 1e-6
        assert plan["model"]["flops"] == pytest.approx(C, rel=1e-9)
        on_disk = json.loads((root / f"plan_{base}" / "plan.json").read_text())
        assert on_disk["schema"] == "curate.plan/v1" and "_objects" not in on_disk
    html = root / "plan_fitted" / "report.html"
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 5
    png = root / "report.png"
    _render(html, png)
    from PIL import Image

    im = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert im.shape[0] > 1000
    # a drawn page: plenty of non-white pixels, not a blank or error page
    assert (im < 200).mean() > 0.02
    print(f"report screenshot: {png}")
