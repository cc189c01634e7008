"""`moebert report`: tables, plots and the run manifest from the metrics files. The command's flags and run
live beside the table and plot writers they drive (moebert.reporting.report); this module is its entry
among the stages."""

from moebert.reporting.report import HELP, add_arguments, run

__all__ = ["HELP", "add_arguments", "run"]
