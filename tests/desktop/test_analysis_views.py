"""The analysis views and panel (pytest-qt, offscreen) on the synthetic quadrant generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QMessageBox

from desktop.analysis_views import (
    AnalysisPanel,
    EffectCurvesView,
    LocalityView,
    RealismView,
    ReproduceView,
    ScoreTable,
    view_for,
)
from engine.analysis import curves, locality, realism, reproduce, score
from engine.jobs import run_job
from tests.engine.analysis_toys import QuadrantGenerator, exact_factors, latent_set, param_set, scale_factor_delta

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def quad():
    return QuadrantGenerator().eval()


@pytest.fixture(scope="module")
def lat(quad):
    return latent_set(quad, [[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0.6, 0.8, 0, 0]])


def test_views_show_the_engine_results(qtbot, quad, lat):
    r = run_job(curves.run(quad, lat, None, curves.Params(seeds=2, steps=5, distance="pixel")))
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, EffectCurvesView) and len(v.curves) == 3
    x, y = v.curves[1].getData()
    np.testing.assert_allclose(y, r.mean[1])

    r = run_job(locality.run(quad, lat, [1, 2], locality.Params(samples=4, shifts=3)))
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, LocalityView) and v.choice.count() == 2
    np.testing.assert_allclose(v.heatmap(), r.heatmap[0])
    v.choice.setCurrentIndex(1)
    np.testing.assert_allclose(v.heatmap(), r.heatmap[1])
    assert "hottest 10%" in v.info.text()

    r = run_job(
        realism.run(
            quad,
            lat,
            [0],
            realism.Params(samples=8, reference=8, steps=3),
            features=lambda x: x.mean((2, 3)),
            features_label="channel means",
        )
    )
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, RealismView) and len(v.curves) == 1

    r = run_job(score.run(quad, lat, None, score.Params(seeds=8, steps=3), factors=exact_factors()))
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, ScoreTable) and v.table.rowCount() == 3 and v.table.columnCount() == 8
    assert [v.table.item(i, 3).text() for i in range(3)] == ["yes", "yes", "no"]
    assert "coverage 2/4" in v.summary.text()

    par = param_set(quad, [scale_factor_delta(quad, 0)])
    r = run_job(reproduce.run(quad, par, None, reproduce.Params(steps=4, batch_size=4, eval_samples=8)))
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, ReproduceView) and f"{r.residual[0]:.3f}" in v.info.text()
    assert v.grid.image.shape[:2] == (3 * 18 + 2, 4 * 18 + 2)


def test_panel_runs_an_analysis_on_a_worker(qtbot, quad, lat, tmp_path):
    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    assert not panel.run_btn.isEnabled()
    panel.set_target(quad, lat, 2)
    assert panel.run_btn.isEnabled() and "direction 2" in panel.target_label.text()
    panel.set_analysis("curves")
    panel.set_param("distance", "pixel")
    panel.set_param("seeds", 3)
    panel.set_param("steps", 5)
    with qtbot.waitSignal(panel.finished, timeout=20000) as blocker:
        panel.run_btn.click()
    r = blocker.args[0]
    assert r.kind == "curves" and r.indices == [2] and r.seeds == 3
    assert isinstance(panel.current_view(), EffectCurvesView) and len(panel.current_view().curves) == 1
    qtbot.waitUntil(lambda: panel.run_btn.isEnabled(), timeout=5000)
    png = panel.save_result(tmp_path / "c.png")
    assert png.is_file() and (tmp_path / "c.json").is_file() and (tmp_path / "c.npz").is_file()


def test_panel_cancel_stops_the_job(qtbot, quad, lat):
    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_target(quad, lat, 0)
    panel.set_analysis("locality")
    panel.set_param("samples", 200000)
    panel.set_param("shifts", 3)
    panel.set_param("batch_size", 4)
    panel.run_btn.click()
    qtbot.waitUntil(lambda: panel.progress.maximum() > 1 and panel.progress.value() >= 1, timeout=20000)
    assert panel.cancel_btn.isEnabled() and not panel.run_btn.isEnabled()
    with qtbot.waitSignal(panel.runner.stopped, timeout=20000):
        panel.cancel_btn.click()
    assert panel.status.text() == "cancelled" and panel.result is None
    assert panel.run_btn.isEnabled()


def test_panel_refuses_reproduce_for_a_latent_direction(qtbot, quad, lat):
    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.set_target(quad, lat, 0)
    panel.set_analysis("reproduce")
    panel.run_btn.click()
    box = panel.findChild(QMessageBox, "errorDialog")
    assert box is not None and "parameter direction" in box.text()
    assert not panel.runner.running
    box.close()


def test_panel_shows_a_saved_result(qtbot, quad, tmp_path):
    from engine.analysis import load_result

    par = param_set(quad, [torch.zeros_like(quad.weight.detach()).index_fill_(2, torch.tensor([3]), 1.0)])
    r = run_job(locality.run(quad, par, None, locality.Params(samples=3, shifts=2)))
    jpath, _ = r.save(tmp_path / "loc")
    panel = AnalysisPanel()
    qtbot.addWidget(panel)
    panel.show_result(load_result(jpath))
    assert isinstance(panel.current_view(), LocalityView) and panel.analysis == "locality"
    heat = panel.current_view().heatmap()
    assert heat[3].min() > 0 and np.delete(heat, 3, axis=0).max() == 0  # the edit touches row 3 only


def test_a_registered_analysis_without_its_own_view_shows_its_figure(qtbot, quad, lat):
    from desktop.analysis_views import FigureView
    from tests.engine import toy_analysis

    r = run_job(toy_analysis.run(quad, lat, None))
    v = view_for(r)
    qtbot.addWidget(v)
    assert isinstance(v, FigureView) and not v.label.pixmap().isNull()
    assert "direction 0: mean |change|" in v.lines.text()
