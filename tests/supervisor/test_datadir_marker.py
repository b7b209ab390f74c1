"""supervisor/datadir_marker.py: a plugin started on another data dir than its FIFO folder was last served with
(what `docker plugin upgrade` does to a plugin whose data.source was set) says so once, as an error."""

from __future__ import annotations

from pathlib import Path

from testkit.plugin import start_plugin

SAID = "is not the one this plugin's containers were logged to before"


def said(log_text: str) -> list[str]:
    return [line for line in log_text.splitlines() if SAID in line]


def test_another_data_dir_under_the_same_fifo_folder_is_an_error(short_tmp: Path) -> None:
    plugin = start_plugin(short_tmp)
    assert plugin.stop() == 0
    plugin = start_plugin(short_tmp)  # a plain restart: the same data dir
    assert plugin.stop() == 0
    assert not said(plugin.log_text())

    (short_tmp / "data").rename(short_tmp / "data-before-upgrade")  # the mount now shows another folder
    plugin = start_plugin(short_tmp)
    assert plugin.stop() == 0
    errors = said(plugin.log_text())
    assert len(errors) == 1 and "ERROR" in errors[0] and "data.source" in errors[0], plugin.log_text()[-3000:]

    plugin = start_plugin(short_tmp)  # moved on purpose: said once, not at every start
    assert plugin.stop() == 0
    assert len(said(plugin.log_text())) == 1
