"""`python -m food101_core.report RUN out.html [--stage STAGE]`: a run's findings as one self-contained HTML file.

Built in `app.report` from the app's own views, so that the report and the page never disagree.
"""

from .app.report import build_report, main, write_report

__all__ = ["build_report", "main", "write_report"]

if __name__ == "__main__":
    raise SystemExit(main())
