"""The key map, as a modal over the current screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = """\
Main screen
  tab          experiments pane <-> runs table
  up / down    highlight an experiment or a run
  space        mark the highlighted experiment or run (several)
  q            queue the marked experiments, else the highlighted one
  c            cancel the marked runs, else the highlighted run
  r            retry the marked runs, else the highlighted run
  enter        open the run; on an experiment: its method means
  m            compare: plots of the marked runs overlaid <-> each
               method's mean over seeds with a 95% bootstrap band
  g            next plot (below 120 columns one plot is shown)
Run view
  left / right previous / next round of the histograms
  c / r        cancel / retry this run
  escape       back to the main screen
Everywhere
  p            pause / resume the queue (running runs go on)
  w            start a worker (queueing starts one too)
  ?            this help (escape closes it)
  ctrl+q       quit: runs go on in the worker
"""

class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: auto; max-width: 90%; height: auto; max-height: 90%;
        border: round $accent; padding: 0 1; background: $surface;
    }
    HelpScreen Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(KEYS.rstrip())
