"""Catalog runs in the GUI (offscreen, pytest-qt, a real PostgreSQL server): a synced run followed
from the catalog shows what the local folder shows, and keeps up as the catalog grows; the
Analysis tab opens it like the folder; ``cellbench gui --catalog URL RUN_ID`` opens it; a URL
with a password is refused and never stored."""

from __future__ import annotations

import polars as pl
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pyqtgraph")
pytest.importorskip("pytestqt")
pytest.importorskip("psycopg")

from lab_runs import cycling_frame, make_run
from pg_server import catalog_url, pg_server  # noqa: F401 - fixtures
from PySide6.QtWidgets import QApplication

from cellbench.cli.main import main
from cellbench.daq.run_reader import load_meta, open_run
from cellbench.daq.sync import Syncer
from cellbench.gui import analysis_data as ad
from cellbench.gui.analysis_panel import AnalysisPanel
from cellbench.gui.catalog_open import (
    CatalogRunDialog,
    attach_catalog,
    default_url,
    open_from_catalog,
)
from cellbench.gui.window import MainWindow, gui_settings

WAIT_MS = 30_000  # generous: a loaded 2-core machine


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLBENCH_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("PGSERVICE", raising=False)
    return tmp_path


def _window(qtbot, env) -> MainWindow:
    w = MainWindow(out_dir=env / "runs", refresh_ms=50, attach_interval_s=0.1)
    w.ask_on_close = lambda name: "leave"
    qtbot.addWidget(w)
    return w


def _caught_up(w: MainWindow, counts: dict[str, int]) -> bool:
    feed = w.feed
    return (
        feed is not None
        and feed.poller.caught_up
        and all(feed.poller.offsets[t] >= n for t, n in counts.items())
        and not feed.queue.qsize()
    )


def _shown(w: MainWindow) -> dict:
    """What the window holds of a run: per channel its rows and traces, sweeps, events, status."""
    m = w.model
    out = {"status": m.status, "events": [(e.channel, e.kind, e.message) for e in m.events]}
    for name, view in m.channels.items():
        out[name] = {
            "rows": view.trace.rows_seen,
            **{c: view.trace.column(c).tolist() for c in ("voltage_volt", "current_ampere")},
            "sweeps": [(s.sweep_index, s.z_real_ohm.tolist()) for s in view.sweeps],
            "cycle": view.last.get("cycle_count"),
        }
    return out


def _sync(url: str, archive, run) -> None:
    with Syncer(url, str(archive)) as syncer:
        syncer.sync_once([run])


def test_catalog_run_in_the_window_equals_the_local_folder_and_follows_it(
    qtbot,
    env,
    catalog_url,  # noqa: F811
):
    root, archive = env / "lab", env / "archive"
    run, writer = make_run(root, spectra=True, close=False)  # running: journal rows past seals
    _sync(catalog_url["writer"], archive, run)
    run_id = writer.meta.run_id
    local, remote = _window(qtbot, env), _window(qtbot, env)
    local.attach(run)
    assert attach_catalog(remote, catalog_url["reader"], run_id) is not None
    counts = open_run(run).tables()
    for w in (local, remote):
        qtbot.waitUntil(lambda w=w: _caught_up(w, counts), timeout=WAIT_MS)
        w.tick()
    assert counts["samples"] > 0 and counts["spectra"] > 0
    want = _shown(local)
    assert _shown(remote) == want
    assert remote.feed.path.name == run_id  # the attach line names the run
    assert remote.info_labels["run"].text() == local.info_labels["run"].text()
    assert "catalog run" in remote.run_label.text()

    # the run goes on: new rows reach the catalog, the window takes them
    more = cycling_frame(1, t0_unix=2e9).with_columns(
        pl.lit(9, dtype=pl.Int32).alias("cycle_count")
    )
    writer.append("samples", more)
    writer.event("note", "more rows")
    writer.close()
    _sync(catalog_url["writer"], archive, run)
    counts = open_run(run).tables()
    for w in (local, remote):
        qtbot.waitUntil(lambda w=w: _caught_up(w, counts) and w.model.status != "running",
                        timeout=WAIT_MS)  # fmt: skip
        w.tick()
    assert _shown(remote) == _shown(local)
    assert _shown(remote) != want and remote.model.status == local.model.status
    remote.detach()
    local.detach()


def test_analysis_tab_opens_a_catalog_run_as_the_local_folder(qtbot, env, catalog_url):  # noqa: F811
    run = make_run(env / "lab", spectra=True, cycles=4)
    _sync(catalog_url["writer"], env / "archive", run)
    run_id = load_meta(run).run_id
    here, there = AnalysisPanel(), AnalysisPanel()
    qtbot.addWidget(here)
    qtbot.addWidget(there)
    assert here.open(run)
    open_from_catalog(there, catalog_url["reader"], run_id)
    there.wait(WAIT_MS / 1000)
    assert there.data is not None, there.message.text()
    assert there.data.samples.equals(here.data.samples)
    assert there.data.spectra.equals(here.data.spectra)
    assert there.data.events.equals(here.data.events)
    assert there.source.text().startswith(f"catalog run {run_id}")
    assert ad.cycle_table(there.samples()).equals(ad.cycle_table(here.samples()))
    for panel in (here, there):
        panel.fit_fade()
        panel.wait(WAIT_MS / 1000)
    assert there.fade.result.text() == here.fade.result.text() != ""
    assert there.fade.frame.equals(here.fade.frame)


def test_dialog_lists_filters_and_never_keeps_a_password(qtbot, env, catalog_url, pg_server):  # noqa: F811
    a = make_run(env / "lab", run_id="lab-dialog-alpha")
    b = make_run(env / "lab", run_id="lab-dialog-beta")
    _sync(catalog_url["writer"], env / "archive", a)
    _sync(catalog_url["writer"], env / "archive", b)
    settings = gui_settings()
    dialog = CatalogRunDialog(settings)
    qtbot.addWidget(dialog)
    dialog.url_edit.setText(catalog_url["reader"])
    dialog.filter_edit.setText("DIALOG beta")
    assert dialog.refresh()
    assert [r["run_id"] for r in dialog.runs] == ["lab-dialog-beta"]
    assert dialog.run_id() == "lab-dialog-beta"
    dialog.filter_edit.setText("lab-dialog-")
    assert dialog.refresh() and {r["run_id"] for r in dialog.runs} == {a.name, b.name}
    dialog.filter_edit.setText("it's nowhere")  # a quote is a literal, not SQL
    assert dialog.refresh() and dialog.runs == []
    assert default_url(gui_settings()) == catalog_url["reader"]  # remembered for next time

    secret = pg_server.passwords["analyst1"]
    with_password = catalog_url["reader"].replace("analyst1@", f"analyst1:{secret}@")
    dialog.url_edit.setText(with_password)
    assert not dialog.refresh()
    assert "password" in dialog.message.text() and secret not in dialog.message.text()
    assert secret not in dialog.url_edit.text()  # nor left on the screen
    settings.sync()
    assert secret not in (env / "gui.ini").read_text()
    assert default_url(gui_settings()) == catalog_url["reader"]


def test_cli_gui_catalog_opens_the_run_attached(qtbot, env, catalog_url, monkeypatch, capsys):  # noqa: F811
    run = make_run(env / "lab", run_id="lab-cli-gui")
    _sync(catalog_url["writer"], env / "archive", run)
    counts = open_run(run).tables()
    seen = {}

    def exec_() -> int:  # instead of the event loop: wait for the run, then close
        (w,) = [
            x for x in QApplication.topLevelWidgets() if isinstance(x, MainWindow) and x.isVisible()
        ]
        qtbot.addWidget(w)
        qtbot.waitUntil(lambda: _caught_up(w, counts), timeout=WAIT_MS)
        w.tick()
        seen.update(rows=sum(v.trace.rows_seen for v in w.model.channels.values()))
        seen.update(label=w.run_label.text(), name=w.feed.path.name)
        w.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", staticmethod(exec_))
    assert main(["gui", "--catalog", catalog_url["reader"], "lab-cli-gui"]) == 0
    assert seen["rows"] == counts["samples"] and seen["name"] == "lab-cli-gui"
    assert "catalog run lab-cli-gui" in seen["label"]

    capsys.readouterr()  # a run the catalog does not have: one clear error, no window
    assert main(["gui", "--catalog", catalog_url["reader"], "no-such-run"]) != 0
    assert "no-such-run" in capsys.readouterr().err
    url = catalog_url["reader"].replace("analyst1@", "analyst1:hunter2@")
    assert main(["gui", "--catalog", url, "lab-cli-gui"]) != 0
    err = capsys.readouterr().err
    assert "password" in err and "hunter2" not in err
    assert main(["gui", "--catalog", catalog_url["reader"]]) != 0
    assert "RUN_ID" in capsys.readouterr().err


def test_rows_gone_from_the_live_window_unread_come_from_the_archive(env, catalog_url):  # noqa: F811
    import psycopg

    from cellbench.gui.catalog_open import CatalogPoller

    run, writer = make_run(env / "lab", close=False)
    _sync(catalog_url["writer"], env / "archive", run)
    run_id = writer.meta.run_id
    poller = CatalogPoller(catalog_url["reader"], run_id)
    try:
        first = [m.frame for m in poller.poll() if m.kind == "samples"]
        assert poller.caught_up
        old = poller.offsets["samples"]
        writer.append("samples", cycling_frame(1, t0_unix=2e9))
        writer.seal()
        writer.close()
        _sync(catalog_url["writer"], env / "archive", run)  # archived and in the live window
        with psycopg.connect(catalog_url["admin"], autocommit=True) as conn:
            gone = conn.execute(  # the window's oldest part dropped before the GUI read it
                "DELETE FROM cellbench.samples WHERE run_id = %s AND row_no >= %s AND row_no < %s",
                (run_id, old, old + 50),
            ).rowcount
        assert gone == 50
        later = [m.frame for m in poller.poll() if m.kind == "samples"]
        assert poller.caught_up and poller.status == "completed"
        got = pl.concat(first + later)
        want = open_run(run).read("samples")
        assert got.equals(want.select(got.columns))
        assert got.height > old + 50 and poller._assembled == 2  # assembled again, once
    finally:
        poller.close()


def test_following_survives_a_server_restart(qtbot, env, catalog_url, pg_server):  # noqa: F811
    run, writer = make_run(env / "lab", close=False)
    _sync(catalog_url["writer"], env / "archive", run)
    w = _window(qtbot, env)
    assert attach_catalog(w, catalog_url["reader"], writer.meta.run_id) is not None
    qtbot.waitUntil(lambda: _caught_up(w, open_run(run).tables()), timeout=WAIT_MS)
    pg_server.restart()  # immediate shutdown: the window's connection is cut
    writer.append("samples", cycling_frame(1, t0_unix=2e9))
    writer.close()
    _sync(catalog_url["writer"], env / "archive", run)
    counts = open_run(run).tables()
    qtbot.waitUntil(lambda: _caught_up(w, counts) and w.feed.error is None, timeout=WAIT_MS)
    w.tick()
    assert sum(v.trace.rows_seen for v in w.model.channels.values()) == counts["samples"]
    assert w.model.status == "completed"
    w.detach()
