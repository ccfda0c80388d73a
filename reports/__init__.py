"""HTML reports over run directories (they read files only, never the trainer).

    from reports import write_report
    write_report("runs")            # -> runs/report.html, one self-contained file
"""
from reports.html import write_report

__all__ = ["write_report"]
