"""Catalog runs in the window: attach to one (read-only, refreshed as the catalog grows) and
open one in the Analysis tab, as a local run folder is.

A catalog run is named by the catalog's URL and its run id. Its history is assembled once as a
temporary run folder by :func:`cellbench.daq.catalog_run.fetch_run` (the archived Parquet
segments, each checked against its SHA-256, then the rows past the archive from the catalog's
live window); :class:`CatalogPoller` then takes the rows the catalog gains from its live window
(rows that left the window unread are archived by then: the run is assembled again). It hands
out the same :class:`~cellbench.daq.live.LiveMessage` objects as the folder poller, so the live
view, the overview and the alarms work unchanged.

Credentials the libpq way only: the URL names user, host and database (or ``service=NAME`` of a
``pg_service.conf``), the password comes from ``PGPASSFILE``/``~/.pgpass`` or the service file.
A URL holding a password is refused (:func:`cellbench.daq.catalog.check_url`) before anything
connects, is never shown, and never reaches the settings file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import cellbench.gui.qt_fixes  # noqa: F401 - before any PySide6 call
from cellbench.core import schema
from cellbench.daq.live import LiveMessage
from cellbench.gui.poller import PollFeed

if TYPE_CHECKING:
    import polars as pl

    from cellbench.daq.catalog import Catalog
    from cellbench.gui.analysis_panel import AnalysisPanel
    from cellbench.gui.window import MainWindow

log = logging.getLogger(__name__)

SETTINGS_KEY = "catalog/url"
#: a running run whose catalog row was not updated for this long (s) is shown as not written
STALE_SYNC_S = 120.0
LIST_COLUMNS = ("run", "status", "start (UTC)", "cell", "chemistry", "station", "pc", "samples")


# ----------------------------------------------------------------------------------- the URL


def default_url(settings: QSettings | None) -> str:
    """The catalog URL last used (settings), else ``service=$PGSERVICE`` when that is set."""
    if settings is not None:
        url = str(settings.value(SETTINGS_KEY, "") or "")
        if url:
            return url
    service = os.environ.get("PGSERVICE", "")
    return f"service={service}" if service else ""


def remember_url(settings: QSettings | None, url: str) -> None:
    """Keep ``url`` for next time; a URL holding a password is refused (CatalogError)."""
    from cellbench.daq.catalog import check_url

    check_url(url)
    if settings is not None:
        settings.setValue(SETTINGS_KEY, url)
        settings.sync()


def list_catalog_runs(url: str, text: str = "", *, limit: int = 5_000) -> list[dict[str, Any]]:
    """Runs in the catalog (newest first) whose id, cell, chemistry, station, PC, protocol or
    status contains ``text`` (case-insensitive; every word must match)."""
    from cellbench.daq.catalog import Catalog

    words = text.lower().split()
    where = None
    if words:  # each word in one of the searchable columns; literals quoted the SQL way
        cols = "run_id || ' ' || cell_name || ' ' || chemistry || ' ' || station || ' ' || pc"
        cols += " || ' ' || protocol || ' ' || status"
        where = " AND ".join(
            f"strpos(lower({cols}), '{w.replace(chr(39), chr(39) * 2)}') > 0" for w in words
        )
    with Catalog(url) as cat:
        return cat.list_runs(where, limit=limit)


# --------------------------------------------------------------------------------- following


class CatalogPoller:
    """New rows and status changes of one catalog run since the previous :meth:`poll`; the
    interface of :class:`cellbench.gui.poller.RunPoller` (``offsets``, ``status``,
    ``writer_alive``, ``caught_up``, ``last_meta``, ``path``).

    Construction reads the run's ``run.json`` from the catalog (a missing run, an unreachable
    server or a URL with a password raise :class:`~cellbench.daq.catalog.CatalogError` at once);
    the history is assembled on the first :meth:`poll` (on the feed's thread).
    """

    def __init__(
        self,
        url: str,
        run_id: str,
        *,
        chunk_rows: int = 200_000,
        samples_chunk_rows: int = 1_000_000,
        stale_sync_s: float = STALE_SYNC_S,
    ):
        from cellbench.daq.catalog import Catalog, describe

        self.url, self.run_id = url, str(run_id)
        self.where = describe(url)
        self.chunk_rows, self.samples_chunk_rows = int(chunk_rows), int(samples_chunk_rows)
        self.stale_sync_s = float(stale_sync_s)
        self._cat: Catalog | None = Catalog(url)
        try:
            self.last_meta, self.counts = self._cat.run_meta(self.run_id)
        except Exception:
            self.close()
            raise
        self._tmp = Path(tempfile.mkdtemp(prefix="cellbench-catalog-"))
        self._assembled = 0
        self._folder: Path | None = None
        self._reader = None
        self._local = {table: 0 for table in schema.TABLES}  # rows in the assembled folder
        self.offsets = {table: 0 for table in schema.TABLES}  # rows already taken
        self.status = ""
        self.writer_alive = False
        self.caught_up = False

    @property
    def meta(self):
        return self.last_meta

    @property
    def path(self) -> Path:
        """The assembled run folder (named by the run id; temporary, read-only use)."""
        return self._folder or self._tmp / self.run_id

    def _catalog(self) -> Catalog:
        if self._cat is None:  # reconnect after a dropped connection or a server restart
            from cellbench.daq.catalog import Catalog

            self._cat = Catalog(self.url)
        return self._cat

    def _assemble(self) -> None:
        """The run as a folder again: archived segments plus the catalog's newest rows."""
        from cellbench.daq.catalog_run import fetch_run
        from cellbench.daq.run_reader import open_run

        self._assembled += 1
        dest = self._tmp / f"a{self._assembled}"
        try:
            folder = fetch_run(self.url, self.run_id, dest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # half a copy: tried afresh at the next poll
            raise
        old, self._folder = self._folder, folder
        self._reader = open_run(folder)
        self._local = {t: int(self._reader.tables().get(t, 0)) for t in schema.TABLES}
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)

    def _rows(self, table: str, start: int, take: int) -> pl.DataFrame:
        """Rows ``start`` .. ``start + take - 1`` of ``table`` (fewer if there are not)."""
        if start >= self._local[table]:
            tail = self._catalog().rows_from(table, self.run_id, start)
            if tail.height and tail["row_no"][0] == start:
                tail = tail.head(take)
                if tail["row_no"][-1] - start == tail.height - 1:  # no gap
                    return tail.drop("row_no")
            self._assemble()  # gone from the live window unread: archived by now
        if start >= self._local[table]:
            from cellbench.daq.catalog_run import CatalogRunError

            raise CatalogRunError(
                f"catalog run {self.run_id} {table}: row {start} is neither in the archive nor "
                "in the catalog's live window"
            )
        take = min(take, self._local[table] - start)
        return self._reader.scan(table).slice(start, take).collect()

    def poll(self) -> list[LiveMessage]:
        """Messages for what changed: new rows of each table, then the status (if changed)."""
        from cellbench.daq.catalog_schema import SCHEMA

        try:
            cat = self._catalog()
            meta, counts = cat.run_meta(self.run_id)
            row = cat.conn.execute(
                f"SELECT EXTRACT(EPOCH FROM now() - synced_at) FROM {SCHEMA}.runs "
                "WHERE run_id = %s",
                (self.run_id,),
            ).fetchone()
            if self._reader is None:
                self._assemble()
            out: list[LiveMessage] = []
            caught_up = True
            for table in ("events", "spectra", "samples"):  # step labels before their rows
                have, start = counts[table], self.offsets[table]
                if have <= start:
                    continue
                limit = self.samples_chunk_rows if table == "samples" else self.chunk_rows
                frame = self._rows(table, start, min(have - start, limit))
                self.offsets[table] = start + frame.height
                caught_up &= self.offsets[table] >= have
                if frame.height == 0:
                    continue
                if table == "events":
                    out.extend(LiveMessage("event", event=r) for r in frame.iter_rows(named=True))
                else:
                    out.append(LiveMessage(table, frame=frame))
        except Exception:
            self._drop_connection()
            raise
        self.last_meta, self.counts = meta, counts
        age = float(row[0]) if row and row[0] is not None else float("inf")
        self.writer_alive = meta.status == "running" and age < self.stale_sync_s
        if meta.status != self.status:
            self.status = meta.status
            out.append(LiveMessage("status", status=meta.status))
        self.caught_up = caught_up
        return out

    def _drop_connection(self) -> None:
        if self._cat is not None:
            self._cat.close()
            self._cat = None

    def close(self) -> None:
        """Close the connection and remove the assembled folder."""
        self._drop_connection()
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


class CatalogFeed(PollFeed):
    """A :class:`CatalogPoller` on a daemon thread, every ``interval_s``, into ``queue``: the
    interface of :class:`cellbench.gui.poller.AttachFeed` (``poller``, ``path``, ``error``,
    ``start``, ``stop``, ``drain``). It polls again only once the GUI took the last poll's
    messages (one poll ahead while a long history loads); ``error`` holds the last error (the
    server down, the network gone) and clears when polls work again."""

    poller: CatalogPoller

    def __init__(self, url: str, run_id: str, *, interval_s: float = 1.0, **poller_kw: Any):
        super().__init__(
            CatalogPoller(url, run_id, **poller_kw),
            interval_s=interval_s,
            thread_name=f"cellbench-catalog-{run_id}",
        )

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if not self._thread.is_alive():
            self.poller.close()

    def _error_text(self, exc: Exception) -> str:
        from cellbench.daq.catalog import redact

        return redact(f"{type(exc).__name__}: {exc}")

    def _log_error(self, exc: Exception) -> None:
        log.warning("catalog run %s: %s", self.poller.run_id, self.error)


def attach_catalog(window: MainWindow, url: str, run_id: str) -> CatalogFeed | None:
    """Follow catalog run ``run_id`` in ``window`` read-only (as an attached run folder):
    history from the archive, then the catalog's newest rows as they arrive. None, with the
    reason in the attach box, when the catalog or the run cannot be read."""
    from cellbench.daq.catalog import describe, redact

    window.detach()
    try:
        feed = CatalogFeed(url, run_id, interval_s=window.attach_interval_s)
    except Exception as exc:
        window.attach_label.setText(f"cannot attach: {redact(str(exc))}")
        return None
    window._reset_view()
    window.feed = feed
    feed.start()
    window.run_label.setText(f"attached to catalog run {run_id} ({describe(url)}), read-only")
    window._update_buttons()
    with contextlib.suppress(Exception):
        remember_url(window.settings, url)
    return feed


# ---------------------------------------------------------------------------------- choosing


class CatalogRunDialog(QDialog):
    """Choose a catalog run: the URL (password never here), a filter, the list of runs."""

    def __init__(self, settings: QSettings | None, parent: QWidget | None = None, *, title=""):
        super().__init__(parent)
        self.setWindowTitle(title or "Open a run from the catalog")
        self.settings = settings
        self.runs: list[dict[str, Any]] = []
        self.url_edit = QLineEdit(default_url(settings))
        self.url_edit.setPlaceholderText("service=lab  or  postgresql://analyst1@dbhost/lab")
        self.url_edit.setToolTip(
            "libpq URL or service name; the password comes from PGPASSFILE (~/.pgpass, mode "
            "0600) or pg_service.conf, never from here"
        )
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("filter: run id, cell, chemistry, station, PC …")
        self.filter_edit.returnPressed.connect(self.refresh)
        self.list_button = QPushButton("List runs")
        self.list_button.clicked.connect(self.refresh)
        self.table = QTableWidget(0, len(LIST_COLUMNS))
        self.table.setHorizontalHeaderLabels(LIST_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _: self.accept())
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("catalog", self.url_edit)
        form.addRow("filter", self.filter_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.list_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(820, 480)
        if self.url_edit.text():
            QTimer.singleShot(0, self.refresh)

    def url(self) -> str:
        return self.url_edit.text().strip()

    def refresh(self) -> bool:
        """List the catalog's runs matching the filter; False with the reason shown on error."""
        from cellbench.daq.catalog import redact

        self.table.setRowCount(0)
        self.runs = []
        url = self.url()
        if not url:
            self.message.setText("give the catalog: a libpq URL or service=NAME")
            return False
        try:
            remember_url(self.settings, url)
            self.runs = list_catalog_runs(url, self.filter_edit.text())
        except Exception as exc:
            if redact(url) != url:  # a password typed here does not stay on the screen
                self.url_edit.setText(redact(url))
            self.message.setText(redact(str(exc)))
            return False
        self.table.setRowCount(len(self.runs))
        for r, run in enumerate(self.runs):
            start = run["start_time"]
            cells = (
                run["run_id"],
                run["status"],
                start.strftime("%Y-%m-%d %H:%M:%S") if start is not None else "",
                run["cell_name"],
                run["chemistry"],
                run["station"],
                run["pc"],
                str(run["samples_rows"]),
            )
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(str(text or "")))
        if self.runs:
            self.table.selectRow(0)
        self.message.setText(f"{len(self.runs)} run(s)")
        return True

    def run_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.runs[rows[0].row()]["run_id"] if rows and self.runs else None

    def choose(self) -> tuple[str, str] | None:
        """Show the dialog; ``(url, run_id)`` of the run chosen, or None."""
        if self.exec() != QDialog.DialogCode.Accepted:
            return None
        run_id = self.run_id()
        return (self.url(), run_id) if run_id else None


def _settings() -> QSettings:
    from cellbench.gui.window import gui_settings

    return gui_settings()


def ask_attach_catalog(window: MainWindow) -> None:
    """The Set-up tab's *From catalog…*: choose a catalog run and follow it."""
    chosen = CatalogRunDialog(window.settings, window, title="Attach to a catalog run").choose()
    if chosen is not None:
        attach_catalog(window, *chosen)


# ---------------------------------------------------------------------------------- analysis


def open_from_catalog(panel: AnalysisPanel, url: str, run_id: str) -> None:
    """Assemble catalog run ``run_id`` (on the panel's worker thread) and open it in the
    Analysis tab like a local run folder; the temporary folder is removed once it is read."""
    from cellbench.daq.catalog import check_url, describe, redact

    try:
        check_url(url)
    except Exception as exc:
        panel.message.setText(redact(str(exc)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="cellbench-catalog-"))

    def work() -> Path:
        from cellbench.daq.catalog_run import fetch_run

        try:
            return fetch_run(url, run_id, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise  # catalog errors name the server without its password

    def done(folder: Path) -> None:
        try:
            if panel.open(folder):  # read into memory: the folder can go
                data = panel.data
                data.source = f"catalog run {run_id} ({describe(url)})"
                n_s = data.samples.height if data.samples is not None else 0
                n_z = data.spectra.height if data.spectra is not None else 0
                panel.source.setText(f"{data.source}: {n_s} samples, {n_z} impedance points")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    panel._run(f"reading catalog run {run_id}", work, done)


def ask_open_from_catalog(panel: AnalysisPanel) -> None:
    """The Analysis tab's *Open from catalog…*: choose a catalog run and analyse it."""
    chosen = CatalogRunDialog(_settings(), panel).choose()
    if chosen is not None:
        open_from_catalog(panel, *chosen)
